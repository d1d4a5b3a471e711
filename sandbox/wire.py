"""When a request reached the machine: the kernel's receive time of its bytes.

A handler thread stamps a request once it has the GIL and has parsed the
request line, which on a busy machine can be tens of milliseconds after the
bytes arrived. The instrument standing for the remote server must count
arrivals, not its own scheduling, so on Linux each connection asks the kernel
to stamp every received segment (``SO_TIMESTAMPNS``) and the handler reads
through :class:`StampedReader`, which keeps the stamp of the bytes that began
the current request. Elsewhere (or if the option is refused) there is no
kernel stamp and the handler's own time is used.
"""

import io
import socket
import struct
import sys
import time

# Linux's option and control message (64-bit: struct timespec of two longs).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def enable(sock):
    """Ask for kernel receive stamps on ``sock``; False where unsupported."""
    if not sys.platform.startswith("linux") or not _ANC_SIZE:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


class StampedReader(io.RawIOBase):
    """A raw reader of a connected socket that remembers receive stamps.

    ``begin()`` marks the start of a request; :meth:`arrival` is then the
    monotonic time at which the first bytes read after the mark reached the
    kernel (or, if the request was already buffered, those of the last
    read). Stamps are converted from the kernel's real-time clock to
    ``time.monotonic()``, the clock the sandbox's counters use.
    """

    def __init__(self, sock):
        super().__init__()
        self._sock = sock
        self._last = None  # real time of the last stamped read
        self._first = None  # real time of the first read since begin()
        self._marked = False

    def readable(self):
        return True

    def readinto(self, buffer):
        size, ancdata, _flags, _addr = self._sock.recvmsg_into([buffer], _ANC_SIZE)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(data)
                self._last = sec + nsec / 1e9
                if self._marked and self._first is None:
                    self._first = self._last
        return size

    def begin(self):
        self._marked, self._first = True, None

    def arrival(self):
        """Monotonic time the current request's bytes arrived, or None."""
        stamp = self._first if self._first is not None else self._last
        if stamp is None:
            return None
        # Both clocks read back to back: their offset, to well under 1 ms.
        return stamp - time.time() + time.monotonic()
