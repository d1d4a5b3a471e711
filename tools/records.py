"""Immutable records the SICANTIK client returns (plain data, no behaviour).

They are built by ``decoders.py`` from decoded answers; field meanings are those
of the SICANTIK API reference. Text fields are cleaned (whitespace collapsed,
placeholders such as ``'0'`` or ``'-'`` turned into None, see
``placeholders.py``) except ``no_surat``, which is kept exactly as served
(a placeholder still becomes None) because the server matches its base64
verbatim.
"""

import base64
from dataclasses import dataclass
from datetime import date


def encode_no_izin(no_surat):
    """Standard base64 (with ``=`` padding) of the UTF-8 bytes of ``no_surat``.

    The value is used verbatim: no trimming, no whitespace collapsing, because
    the server compares it with a base64 string stored in its database.
    """
    return base64.b64encode(no_surat.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class SkippedRecord:
    """A row that could not be used, with the reason (reported, not raised)."""

    index: int
    reason: str
    pendaftaran_id: str | None = None


@dataclass(frozen=True)
class PermitType:
    """One row of ``jenisperizinanlist``.

    ``name`` has its whitespace collapsed, like ``IssuedPermit.permit_type``, so
    the two match; ``raw_name`` is the name exactly as served.
    """

    id: int | None
    name: str
    raw_name: str
    group: str | None = None
    processing_days: int | None = None


@dataclass(frozen=True)
class IssuedPermit:
    """One permit of ``listpermohonanterbit``: one letter of one
    registration, the rows of its several applicants merged.

    * ``no_surat``: the letter number exactly as served, None when the row
      has none (the permit "registration without a letter");
      ``letter_numbers`` is ``(no_surat,)``, or empty without a letter.
    * ``applicant_names``: every distinct applicant name of the merged rows,
      in ``normalise.name_order``: the first is the applicant, whatever the
      order the rows of the page were served in.
    * ``has_expiry_field``: the list carried ``d_berlaku_izin`` (the "future
      API"); then ``expiry_*`` are filled and no ``cekperizinan`` call is
      needed for this permit.
    """

    pendaftaran_id: str
    no_surat: str | None
    permit_type: str | None
    applicant_names: tuple[str, ...] = ()
    letter_numbers: tuple[str, ...] = ()
    has_expiry_field: bool = False
    expiry_date: date | None = None
    expiry_unlimited: bool = False
    expiry_invalid: bool = False
    expiry_raw: str | None = None
    row_count: int = 1
    warnings: tuple[str, ...] = ()

    @property
    def applicant_name(self):
        return self.applicant_names[0] if self.applicant_names else None

    @property
    def no_izin(self):
        """The ``cekperizinan`` parameter for this permit (None without number)."""
        return encode_no_izin(self.no_surat) if self.no_surat else None


@dataclass(frozen=True)
class PermitDetails:
    """A permit as told by ``cekperizinan``, several answer rows reduced to one.

    ``expiry_unlimited`` is True when the expiry date is the legacy zero date
    ``0000-00-00``: the permit is valid as long as the business runs.
    ``expiry_invalid`` is True when the server sent an impossible date (kept in
    ``expiry_raw``; ``expiry_date`` is then None). ``warnings`` explains every
    oddity met while reducing the rows (conflicting dates, bad values).
    """

    pendaftaran_id: str | None
    no_surat: str | None
    permit_type: str | None = None
    applicant_names: tuple[str, ...] = ()
    received_date: date | None = None
    expiry_date: date | None = None
    expiry_unlimited: bool = False
    expiry_invalid: bool = False
    expiry_raw: str | None = None
    issue_date: date | None = None
    applicant_address: str | None = None
    applicant_phone: str | None = None
    company_names: tuple[str, ...] = ()
    npwp: str | None = None
    company_address: str | None = None
    company_founded: date | None = None
    company_phone: str | None = None
    kelurahan: str | None = None
    kecamatan: str | None = None
    kabupaten: str | None = None
    propinsi: str | None = None
    row_count: int = 1
    warnings: tuple[str, ...] = ()

    @property
    def applicant_name(self):
        return self.applicant_names[0] if self.applicant_names else None

    @property
    def company_name(self):
        return self.company_names[0] if self.company_names else None


@dataclass(frozen=True)
class Page:
    """One page of ``listpermohonanterbit``.

    ``raw_count`` is the number of rows served (before merging duplicates and
    skipping bad rows): pagination advances by it, never by ``num_rows``.
    """

    offset: int
    limit: int
    raw_count: int
    permits: tuple[IssuedPermit, ...] = ()
    skipped: tuple[SkippedRecord, ...] = ()
    is_last: bool = False
    # Digest of the rows as served: a caller that stores it can notice, in a
    # later run, a server that serves this page again for the next offset.
    digest: str | None = None

    @property
    def next_offset(self):
        return self.offset + self.raw_count

    @property
    def has_expiry_field(self):
        """True when the list carries expiry dates (the "future API")."""
        return any(permit.has_expiry_field for permit in self.permits)
