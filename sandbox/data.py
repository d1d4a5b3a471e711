"""Synthetic, reproducible SICANTIK data for Kabupaten Karo.

Everything is derived from one seeded ``random.Random`` and a reference day
(``today``), so a seed always gives the same permits. Records are slotted
objects and shared tuples: 100,000 permits stay within a few tens of MB.

A ``Permit`` is one letter (``no_surat``) of one registration. With
``second_letters`` some registrations carry two letters (a reissued or a
second permit): two ``Permit`` objects sharing the ``pendaftaran_id``, the
applicants, company and receipt date, each with its own letter, issue date
and expiry date. The list serves one row per applicant and letter.
"""

import base64
import bisect
import random
from datetime import date
from typing import NamedTuple

KABUPATEN = "KARO"
PROPINSI = "SUMATERA UTARA"
ZERO_DATE = "0000-00-00"
FIRST_DAY = date(2010, 1, 4)
_EPOCH = date(1970, 1, 1).toordinal()

# cekperizinan answers these fields, in this order.
PERMIT_FIELDS = (
    "pendaftaran_id",
    "n_pemohon",
    "n_perizinan",
    "no_surat",
    "d_terima_berkas",
    "d_berlaku_izin",
    "a_pemohon",
    "telp_pemohon",
    "tgl_surat",
    "n_perusahaan",
    "npwp",
    "a_perusahaan",
    "d_tgl_berdiri",
    "i_telp_perusahaan",
    "n_kecamatan",
    "n_kabupaten",
    "n_propinsi",
    "n_kelurahan",
)

# Kecamatan of Karo with some of their villages (desa / kelurahan).
KECAMATAN = {
    "KABANJAHE": (
        "GUNG LETO", "GUNG NEGERI", "KAMPUNG DALAM", "LAU CIMBA", "PADANG MAS",
        "KETAREN", "SAMURA", "SUMBER MUFAKAT", "KACARIBU", "LAU SIMOMO",
    ),
    "BERASTAGI": (
        "GUNDALING I", "GUNDALING II", "TAMBAK LAU MULGAP I",
        "TAMBAK LAU MULGAP II", "SEMPA JAYA", "ROHANI", "DOULU", "GURUSINGA",
        "RAYA", "LAU GUMBA",
    ),
    "SIMPANG EMPAT": (
        "GURUKINAYAN", "SURBAKTI", "LINGGA", "GAJAH", "BEGANDING", "JERAYA",
        "PINTU BESI", "SEDANG", "PERTEGUHEN",
    ),
    "TIGAPANAH": (
        "TIGAPANAH", "SEBERAYA", "LEPAR SAMURA", "KUBU SIMBELANG", "BERTAH",
        "MANUK MULIA", "SUKA", "KACINAMBUN", "AJI JULU",
    ),
    "BARUSJAHE": (
        "BARUSJAHE", "SUKAJULU", "TANGKIDIK", "SERDANG", "PENAMPEN", "SIKAB",
        "BULANJAHE",
    ),
    "MEREK": (
        "MEREK", "SITUNGGALING", "PERTIBI TEMBE", "NAGALINGGA", "REGAJI",
        "KODON-KODON", "GARINGGING",
    ),
    "MUNTE": ("MUNTE", "SARIMUNTE", "KUTAMBARU", "NAGERI", "KINEPPEN", "BULUH NAMAN"),
    "JUHAR": (
        "JUHAR GINTING", "JUHAR TARIGAN", "JUHAR PERANGIN-ANGIN", "BEKILANG",
        "PERNANTIN", "SIGENDERANG",
    ),
    "TIGABINANGA": (
        "TIGABINANGA", "KUALA", "KUTABANGUN", "GUNUNG", "PERGENDANGEN",
        "KUTA GALOH",
    ),
    "KUTABULUH": ("KUTABULUH", "KUTABULUH SIMOLE", "NEGERI JAHE", "SIABANG-ABANG"),
    "PAYUNG": ("PAYUNG", "UJUNG PAYUNG", "BATU KARANG", "CIMBANG", "RIMO KAYU"),
    "NAMANTERAN": (
        "NAMAN", "SUKANDEBI", "KUTA RAKYAT", "SIGARANG-GARANG", "KUTA GUGUNG",
        "SUKANALU",
    ),
    "MERDEKA": ("MERDEKA", "GONGSOL", "SADA PERARIH", "JARANGUDA", "SEMANGAT GUNUNG"),
    "DOLAT RAYAT": (
        "DOLAT RAYAT", "SAMPUN", "BUKIT", "UJUNG SAMPUN", "MELAS", "SUGIHEN",
    ),
    "LAUBALENG": ("LAUBALENG", "LAU PERANGGUNEN", "BUAH RAJA", "DURIN RUGUN"),
    "MARDINGDING": ("MARDINGDING", "LAU PAKAM", "TANJUNG PAMAH", "KUTA PINANG"),
    "TIGANDERKET": ("TIGANDERKET", "KUTAMBARAS", "TANJUNG MERAHE", "SUSUK", "TEMBURUN"),
}  # fmt: skip
# Kabanjahe and Berastagi are the towns: most businesses sit there.
_KEC_WEIGHTS = (30, 24, 8, 6, 4, 4, 3, 3, 3, 2, 2, 3, 2, 2, 2, 1, 1)

MARGA = (
    "Ginting", "Karo-Karo", "Sembiring", "Tarigan", "Perangin-angin", "Sitepu",
    "Sinulingga", "Barus", "Purba", "Meliala", "Kaban", "Keliat", "Surbakti",
    "Bangun", "Tarigan Sibero", "Ginting Manik", "Sembiring Milala", "Sinuhaji",
    "Pelawi", "Brahmana", "Depari", "Pandia", "Gurusinga", "Sebayang", "Ketaren",
    "Sinukaban", "Pinem", "Sinuraya", "Tarigan Silangit", "Karo Sekali",
)  # fmt: skip
MALE_NAMES = (
    "Ukur", "Mulianta", "Benta", "Ersada", "Pinta", "Ngadap", "Malem", "Sabar",
    "Terkelin", "Ngasup", "Rajin", "Tekang", "Dermawan", "Perdana", "Ardianta",
    "Sastra", "Petrus", "Johannes", "Natanael", "Jaya", "Robinson", "Edi",
    "Sentosa", "Kamsen", "Riemenda", "Nehemia", "Antonius", "Bastanta", "Darwin",
    "Ngarap", "Tagor", "Eben",
)  # fmt: skip
FEMALE_NAMES = (
    "Rasmita", "Rehulina", "Ernawati", "Sri Ulina", "Junita", "Kristina",
    "Rosmawati", "Lasma", "Ninta", "Ersalina", "Nurhayati", "Dewi", "Selvia",
    "Ulina", "Rosmalem", "Deliana", "Mehuli", "Ngemalem", "Pebriani", "Sriwati",
    "Juliana", "Mbelin",
)  # fmt: skip
# Baptismal names that reach the database with their accents.
ACCENTED_NAMES = ("José", "André", "Zoë", "Renée", "Agnès", "Noël")
STREETS = (
    "Veteran", "Kapt. Pala Bangun", "Jamin Ginting", "Gundaling", "Udara",
    "Kotacane", "Samura", "Pahlawan", "Irian", "Sudirman", "Mariam Ginting",
    "Bhayangkara", "Kiras Bangun", "Selamat Ketaren", "Perwira", "Stasiun",
    "Kolam Renang", "Abdul Kadir", "Pendidikan", "Singa", "Meriah", "Jambu",
)  # fmt: skip
BUSINESS_WORDS = (
    "Sentosa", "Rudang", "Bunga Mayang", "Mejuah-juah", "Sinabung", "Sibayak",
    "Lau Kawar", "Tanah Karo", "Simalem", "Mbuah Page", "Deleng", "Gundaling",
    "Jaya Abadi", "Maju Bersama", "Sejahtera", "Bukit Kubu", "Sipiso-piso",
)  # fmt: skip
COMPANY_FORMS = (
    "UD. {m} Jaya", "CV. {m} Karya", "Kedai Kopi {m}", "Toko {w}",
    "Rumah Makan {w}", "PT. {w} Karo Mandiri", "Apotek {w}", "Klinik {w}",
    "Bengkel {m}", "Koperasi {w}", "Hotel {w}", "Penginapan {w}",
    "Toko Bangunan {w}", "Grosir {m}", "Doorsmeer {m}", "Kilang Padi {m}",
    "UD. Jeruk Manis {m}", "CV. Sayur Mayur {w}", "Kafe {w}",
)  # fmt: skip
# Odd spellings seen in real registries; each must survive every format.
ODD_COMPANY_FORMS = (
    "‘Kedai’ Kopi {m}",
    "Toko “{w}”",
    "UD. {m} & Keluarga",
    'Toko "{w}"',
)
MOBILE_PREFIXES = ("811", "812", "813", "821", "822", "823", "852", "853")
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
TDP_FORMS = ("PO", "CV", "PT", "KOP")


class PermitTypeSpec(NamedTuple):
    """One permit type and how the generator uses it."""

    id: int
    name: str
    group: str | None
    v_hari: int
    code: str  # letter code inside no_surat
    klass: str  # archive classification of the newer no_surat format
    weight: float
    company_share: float  # share of its permits held by a company
    years: int  # validity; 0 = mostly "valid while the business runs"
    first_year: int
    last_year: int | None


# fmt: off
PERMIT_TYPE_SPECS = (
    PermitTypeSpec(1, "SURAT IZIN USAHA PERDAGANGAN (SIUP)", "PERDAGANGAN", 3,
                   "SIUP", "503.510", 16, 0.99, 5, 2010, None),
    PermitTypeSpec(2, "TANDA DAFTAR PERUSAHAAN (TDP)", "PERDAGANGAN", 3,
                   "TDP", "503.530.570", 14, 0.99, 5, 2010, 2020),
    PermitTypeSpec(3, "IZIN MENDIRIKAN BANGUNAN (IMB)", "PEKERJAAN UMUM", 14,
                   "IMB", "503.640", 7, 0.9, 0, 2010, 2021),
    PermitTypeSpec(4, "PERSETUJUAN BANGUNAN GEDUNG (PBG)", "PEKERJAAN UMUM", 14,
                   "PBG", "503.640.600", 6, 0.9, 0, 2021, None),
    PermitTypeSpec(5, "IZIN GANGGUAN  USAHA (HO)", "LINGKUNGAN HIDUP", 7,
                   "HO", "503.660", 8, 0.99, 3, 2010, 2018),
    PermitTypeSpec(6, "SURAT IZIN TEMPAT USAHA (SITU)", None, 5,
                   "SITU", "503.520", 5, 0.99, 3, 2010, 2017),
    PermitTypeSpec(7, "IZIN REKLAME", None, 3,
                   "REK", "503.570", 4, 0.97, 1, 2010, None),
    PermitTypeSpec(8, "TANDA DAFTAR USAHA PARIWISATA (TDUP)", "PARIWISATA", 7,
                   "TDUP", "503.556", 3, 0.99, 5, 2012, None),
    PermitTypeSpec(9, "SURAT IZIN PRAKTIK DOKTER (SIP)", "KESEHATAN", 5,
                   "SIP-DR", "503.445", 1.8, 0.0, 5, 2010, None),
    PermitTypeSpec(10, "SURAT IZIN PRAKTIK BIDAN (SIPB)", "KESEHATAN", 5,
                   "SIPB", "503.445.1", 1.7, 0.0, 5, 2010, None),
    PermitTypeSpec(12, "SURAT IZIN APOTEK (SIA)", "KESEHATAN", 10,
                   "SIA", "503.445.2", 1.2, 1.0, 5, 2010, None),
    PermitTypeSpec(13, "IZIN TRAYEK", "PERHUBUNGAN", 7,
                   "TRAYEK", "503.551", 3, 0.95, 1, 2010, None),
    PermitTypeSpec(14, "TANDA DAFTAR GUDANG (TDG)", "PERDAGANGAN", 5,
                   "TDG", "503.530", 1, 1.0, 5, 2010, None),
    PermitTypeSpec(15, "TANDA DAFTAR INDUSTRI (TDI)", "PERINDUSTRIAN", 7,
                   "TDI", "503.536", 2, 1.0, 5, 2010, 2020),
    PermitTypeSpec(16, "IZIN USAHA JASA KONSTRUKSI (IUJK)", "PEKERJAAN UMUM", 7,
                   "IUJK", "503.602", 2, 1.0, 3, 2010, None),
    PermitTypeSpec(17, "IZIN USAHA TOKO MODERN (IUTM)", "PERDAGANGAN", 10,
                   "IUTM", "503.531", 0.5, 1.0, 5, 2012, None),
    PermitTypeSpec(18, "SURAT IZIN PRAKTIK PERAWAT (SIPP)", "KESEHATAN", 5,
                   "SIPP", "503.445.3", 1, 0.0, 5, 2014, None),
    PermitTypeSpec(19, "IZIN USAHA PERIKANAN (IUP)", "PERIKANAN", 7,
                   "IUP", "503.523", 0.6, 1.0, 3, 2010, None),
    PermitTypeSpec(20, "IZIN OPERASIONAL SATUAN PENDIDIKAN", "PENDIDIKAN", 14,
                   "IOSP", "503.421", 0.8, 0.9, 5, 2010, None),
    PermitTypeSpec(21, "IZIN USAHA PENGINAPAN  DAN HOMESTAY", "PARIWISATA", 7,
                   "IUPH", "503.556.1", 1.2, 1.0, 3, 2013, None),
    PermitTypeSpec(22, "IZIN PEMAKAIAN RUANG MILIK JALAN", None, 5,
                   "RMJ", "503.620", 0.8, 0.9, 1, 2010, None),
)
# fmt: on

# Application kinds (the KK part of pendaftaran_id) and their shares.
APPLICATION_KINDS = (
    (1, "BARU", 62),
    (2, "PERPANJANGAN", 22),
    (3, "PERUBAHAN", 11),
    (4, "DAFTAR ULANG", 5),
)


class Applicant(NamedTuple):
    n_pemohon: str
    a_pemohon: str
    telp_pemohon: str


class Company(NamedTuple):
    n_perusahaan: str
    npwp: str | None
    a_perusahaan: str
    d_tgl_berdiri: str | None
    i_telp_perusahaan: str
    n_kecamatan: str | None  # None: the company has no village row
    n_kelurahan: str | None


class Permit:
    """One issued permit: its own fields, applicants, company and flags.

    Attribute access (``p.no_surat``) and mapping access (``p["no_surat"]``)
    both work, for every cekperizinan field and every slot.
    """

    __slots__ = (
        "pendaftaran_id",
        "type_id",
        "kind_id",
        "n_perizinan",
        "no_surat",
        "d_terima_berkas",
        "tgl_surat",
        "d_berlaku_izin",
        "applicants",
        "company",
        "listed",
    )

    def __init__(
        self,
        pendaftaran_id,
        type_id,
        kind_id,
        n_perizinan,
        no_surat,
        d_terima_berkas,
        tgl_surat,
        d_berlaku_izin,
        applicants,
        company,
        listed=True,
    ):
        self.pendaftaran_id = pendaftaran_id
        self.type_id = type_id
        self.kind_id = kind_id
        self.n_perizinan = n_perizinan
        self.no_surat = no_surat
        self.d_terima_berkas = d_terima_berkas
        self.tgl_surat = tgl_surat
        self.d_berlaku_izin = d_berlaku_izin
        self.applicants = applicants
        self.company = company
        self.listed = listed

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key, default=None):
        return getattr(self, key, default)

    def __repr__(self):
        return f"<Permit {self.pendaftaran_id} {self.no_surat!r}>"

    # first applicant, as the list endpoint shows it for a single row
    @property
    def n_pemohon(self):
        return self.applicants[0].n_pemohon

    @property
    def a_pemohon(self):
        return self.applicants[0].a_pemohon

    @property
    def telp_pemohon(self):
        return self.applicants[0].telp_pemohon

    @property
    def n_perusahaan(self):
        return self.company.n_perusahaan if self.company else None

    @property
    def npwp(self):
        return self.company.npwp if self.company else None

    @property
    def a_perusahaan(self):
        return self.company.a_perusahaan if self.company else None

    @property
    def d_tgl_berdiri(self):
        return self.company.d_tgl_berdiri if self.company else None

    @property
    def i_telp_perusahaan(self):
        return self.company.i_telp_perusahaan if self.company else None

    @property
    def n_kecamatan(self):
        return self.company.n_kecamatan if self.company else None

    @property
    def n_kelurahan(self):
        return self.company.n_kelurahan if self.company else None

    @property
    def n_kabupaten(self):
        return KABUPATEN if self.has_village else None

    @property
    def n_propinsi(self):
        return PROPINSI if self.has_village else None

    @property
    def has_company(self):
        return self.company is not None

    @property
    def has_village(self):
        return self.company is not None and self.company.n_kelurahan is not None

    @property
    def answers_cekperizinan(self):
        """False when the server's inner joins drop the permit (404)."""
        return self.has_village

    @property
    def no_izin(self):
        """The base64 the server stores next to no_surat."""
        return b64(self.no_surat)

    def items(self):
        """The cekperizinan items: one per applicant, fields in server order."""
        company = self.company or Company(None, None, None, None, None, None, None)
        place = (KABUPATEN, PROPINSI) if self.has_village else (None, None)
        return [
            {
                "pendaftaran_id": self.pendaftaran_id,
                "n_pemohon": who.n_pemohon,
                "n_perizinan": self.n_perizinan,
                "no_surat": self.no_surat,
                "d_terima_berkas": self.d_terima_berkas,
                "d_berlaku_izin": self.d_berlaku_izin,
                "a_pemohon": who.a_pemohon,
                "telp_pemohon": who.telp_pemohon,
                "tgl_surat": self.tgl_surat,
                "n_perusahaan": company.n_perusahaan,
                "npwp": company.npwp,
                "a_perusahaan": company.a_perusahaan,
                "d_tgl_berdiri": company.d_tgl_berdiri,
                "i_telp_perusahaan": company.i_telp_perusahaan,
                "n_kecamatan": company.n_kecamatan,
                "n_kabupaten": place[0],
                "n_propinsi": place[1],
                "n_kelurahan": company.n_kelurahan,
            }
            for who in self.applicants
        ]

    def as_dict(self):
        values = {name: getattr(self, name) for name in PERMIT_FIELDS}
        values.update(
            type_id=self.type_id,
            kind_id=self.kind_id,
            applicants=[a._asdict() for a in self.applicants],
            listed=self.listed,
            has_company=self.has_company,
            has_village=self.has_village,
            no_izin=self.no_izin,
        )
        return values


def _cumulative(weights):
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def b64(text):
    """Standard base64 (with padding) of the UTF-8 bytes, as the server stores."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Dataset:
    """The generated permits plus the indexes the endpoints need."""

    def __init__(self, *, seed, today, permits, permit_types):
        self.seed = seed
        self.today = today
        self.permits = permits
        # as jenisperizinanlist serves them: ordered by name
        self.permit_types = sorted(permit_types, key=lambda t: t["jenis_perizinan"])
        # A registration's first letter; ``letters`` has all of them.
        self.by_pendaftaran_id = {}
        self.letters = {}
        for p in permits:
            self.by_pendaftaran_id.setdefault(p.pendaftaran_id, p)
            self.letters[p.pendaftaran_id] = (
                *self.letters.get(p.pendaftaran_id, ()),
                p,
            )
        # The server's stored base64 column. A value is one Permit, or a tuple
        # when several share it (the empty no_surat): lists would cost ~10 MB
        # per 100,000 permits.
        index = self._by_no_izin = {}
        for p in permits:
            key = b64(p.no_surat)
            found = index.get(key)
            if found is None:
                index[key] = p
            else:
                index[key] = (*found, p) if isinstance(found, tuple) else (found, p)
        # Permits are generated in receipt order, so the served order (receipt
        # date descending, ties by later sequence first) is the reverse; a
        # permit with two applicants yields two adjacent rows.
        self.rows = [
            (p, who) for p in reversed(permits) if p.listed for who in p.applicants
        ]
        self.num_rows = _num_rows(permits, len(self.rows))
        self._summary = None
        # The order of rows that share a receipt date is not stable on the
        # real server. None: stable (the default); "pass": ties reordered
        # when a pass starts (a request for offset 0); "request": before
        # every list request, so one pass can miss a row and serve another
        # twice. Seeded: the n-th reordering is the same for a seed.
        self.shuffle_ties = None
        self.reorderings = 0

    def __len__(self):
        return len(self.permits)

    def reorder_ties(self):
        """Shuffle the rows of each receipt date among themselves, in place
        (the rows a test removed stay removed), the next seeded way."""
        self.reorderings += 1
        rng = random.Random(self.seed * 1_000_003 + self.reorderings)
        rows = list(self.rows)
        start = 0
        for end in range(1, len(rows) + 1):
            if (
                end == len(rows)
                or rows[end][0].d_terima_berkas != rows[start][0].d_terima_berkas
            ):
                group = rows[start:end]
                rng.shuffle(group)
                rows[start:end] = group
                start = end
        self.rows[:] = rows

    def before_list_request(self, offset):
        """Called by the list endpoint: reorder ties as ``shuffle_ties`` says."""
        if self.shuffle_ties == "request" or (
            self.shuffle_ties == "pass" and offset == 0
        ):
            self.reorder_ties()

    def list_item(self, permit, applicant, future_api=False):
        item = {
            "pendaftaran_id": permit.pendaftaran_id,
            "n_pemohon": applicant.n_pemohon,
            "n_perizinan": permit.n_perizinan,
            "no_surat": permit.no_surat,
        }
        if future_api:
            item["d_berlaku_izin"] = permit.d_berlaku_izin
        item["num_rows"] = self.num_rows
        return item

    def lookup_no_izin(self, value):
        """Permits whose stored base64 equals ``value`` exactly (no decoding)."""
        found = self._by_no_izin.get(value)
        if found is None:
            return []
        return list(found) if isinstance(found, tuple) else [found]

    def lookup_no_surat(self, text):
        """Permits whose no_surat equals ``text`` exactly."""
        return self.lookup_no_izin(b64(text))

    def listed_rows(self, future_api=False):
        """listpermohonanterbit rows in served order, duplicates included."""
        return [self.list_item(p, who, future_api) for p, who in self.rows]

    def summary(self):
        if self._summary is None:
            self._summary = _summarize(self)
        return dict(self._summary)


def _num_rows(permits, total_rows):
    """What the server's separate count query gives: the permits issued in the
    latest month, never the list total (clients must not paginate on it)."""
    if not permits:
        return "0"
    month = max(p.tgl_surat for p in permits)[:7]
    count = sum(1 for p in permits if p.tgl_surat.startswith(month))
    if count == total_rows:
        count += 1
    return str(count)


def _summarize(ds):
    today = ds.today.isoformat()
    soon = date.fromordinal(ds.today.toordinal() + 90).isoformat()
    counts = dict.fromkeys(
        (
            "listed",
            "without_company",
            "without_village",
            "with_duplicates",
            "second_letters",
            "empty_no_surat",
            "odd_spacing_no_surat",
            "zero_expiry",
            "null_expiry",
            "expired",
            "expiring_90_days",
        ),
        0,
    )
    seen = set()
    for p in ds.permits:
        expiry = p.d_berlaku_izin
        counts["second_letters"] += p.pendaftaran_id in seen
        seen.add(p.pendaftaran_id)
        counts["listed"] += p.listed
        counts["without_company"] += p.company is None
        counts["without_village"] += p.has_company and not p.has_village
        counts["with_duplicates"] += len(p.applicants) > 1
        counts["empty_no_surat"] += p.no_surat == ""
        counts["odd_spacing_no_surat"] += p.no_surat != " ".join(p.no_surat.split())
        counts["zero_expiry"] += expiry == ZERO_DATE
        counts["null_expiry"] += expiry is None
        if expiry and expiry != ZERO_DATE:
            counts["expired"] += expiry < today
            counts["expiring_90_days"] += today <= expiry <= soon
    return {
        "permits": len(ds.permits),
        "permit_types": len(ds.permit_types),
        **counts,
        "unlisted": len(ds.permits) - counts["listed"],
        "listed_rows": len(ds.rows),
        "num_rows": int(ds.num_rows),
        "seed": ds.seed,
        "today": today,
    }


def generate_dataset(permits=1000, seed=1, today=None, second_letters=0.0):
    """Build a Dataset of ``permits`` issued permits, reproducible for a seed.

    Dates are relative to ``today`` (default: the current date); pass a fixed
    date for data that never changes. ``second_letters`` is the share of
    permits that are the second letter of the registration before them (at
    least 2 when not 0): ``permits`` letters in all, over fewer registrations.
    """
    if permits < 0:
        raise ValueError("permits must be >= 0")
    if not 0 <= second_letters <= 0.5:
        raise ValueError("second_letters must be between 0 and 0.5")
    return _Generator(permits, seed, today or date.today(), second_letters).run()


class _Generator:
    """Draws every value from one seeded RNG, in a fixed order.

    Hot paths use ``int(random() * n)`` rather than ``randrange``/``choice``:
    several times faster, and the tiny bias does not matter here.
    """

    def __init__(self, count, seed, today, second_letters=0.0):
        self.count = count
        self.second_letters = second_letters
        self.seed = seed
        self.today = today
        self.rng = random.Random(seed)
        self.r = self.rng.random
        self.end = today.toordinal()
        self.days = {}
        self.people = []
        self.companies = []
        self.serials = {}
        self.kecamatan = tuple(KECAMATAN)
        self.kec_cum = _cumulative(_KEC_WEIGHTS)
        self.titles = {}

    # -- small helpers -----------------------------------------------------

    def one(self, seq):
        return seq[int(self.r() * len(seq))]

    def day(self, ordinal):
        """(year, month, iso string) of a day ordinal; strings are shared."""
        info = self.days.get(ordinal)
        if info is None:
            d = date.fromordinal(ordinal)
            info = self.days[ordinal] = (d.year, d.month, d.isoformat())
        return info

    def title(self, name):
        text = self.titles.get(name)
        if text is None:
            text = self.titles[name] = name.title()
        return text

    def place(self):
        cum = self.kec_cum
        kec = self.kecamatan[bisect.bisect(cum, self.r() * cum[-1])]
        return kec, self.one(KECAMATAN[kec])

    def phone(self, landline=0.1):
        r = self.r
        x = r()
        if x < 0.1:
            return ""
        if x < 0.17:
            return "-"
        if x < 0.17 + landline:
            return f"0628-{20 + int(r() * 13)}{1000 + int(r() * 9000)}"
        prefix = self.one(MOBILE_PREFIXES)
        num = str(10_000_000 + int(r() * 90_000_000))
        x = r()
        if x < 0.6:
            return f"0{prefix}{num}"
        if x < 0.75:
            return f"62{prefix}{num}"
        if x < 0.9:
            return f"+62 {prefix}-{num[:4]}-{num[4:]}"
        return f"0{prefix} {num[:4]} {num[4:]}"

    def name(self):
        r = self.r
        if r() < 0.002:
            return "0"  # junk typed by a clerk
        marga = self.one(MARGA)
        if r() < 0.45:
            text = f"{self.one(FEMALE_NAMES)} br {marga}"
        else:
            text = f"{self.one(MALE_NAMES)} {marga}"
        if r() < 0.004:
            text = f"{self.one(ACCENTED_NAMES)} {marga}"
        if r() < 0.1:
            text = text.upper()
        return text

    def address(self):
        r = self.r
        kec, village = self.place()
        x = r()
        if x < 0.5:
            street = self.one(STREETS)
            return f"Jl. {street} No. {1 + int(r() * 199)}, {self.title(kec)}"
        if x < 0.85:
            return f"Desa {self.title(village)}, Kec. {self.title(kec)}"
        if x < 0.99:
            return f"Dusun {ROMAN[int(r() * 4)]} {self.title(village)}"
        return "-"

    def person(self):
        if self.people and self.r() < 0.3:
            return self.one(self.people)  # applies again
        who = Applicant(self.name(), self.address(), self.phone())
        self.people.append(who)
        return who

    def npwp(self):
        r = self.r
        x = r()
        if x < 0.04:
            return None
        if x < 0.1:
            return "-"
        return (
            f"{1 + int(r() * 99):02d}.{int(r() * 1000):03d}.{int(r() * 1000):03d}."
            f"{int(r() * 10)}-{100 + int(r() * 30):03d}.000"
        )

    def company(self, received):
        r = self.r
        if self.companies and r() < 0.35:
            return self.one(self.companies)  # one business, several permits
        kec, village = self.place()
        form = self.one(COMPANY_FORMS)
        name = form.format(m=self.one(MARGA), w=self.one(BUSINESS_WORDS))
        npwp = self.npwp()
        address = f"Jl. {self.one(STREETS)} No. {1 + int(r() * 149)}"
        x = r()
        if x < 0.05:
            founded = None
        elif x < 0.08:
            founded = ZERO_DATE
        else:
            founded = self.day(max(received - 30 - int(r() * 7300), _EPOCH))[2]
        if r() < 0.015:
            kec = village = None  # the village row is missing upstream
        company = Company(
            name, npwp, address, founded, self.phone(landline=0.35), kec, village
        )
        self.companies.append(company)
        return company

    def no_surat(self, spec, issued):
        r = self.r
        year, month, _ = self.day(issued)
        newer = year >= 2019 and r() < 0.7
        series = (spec.klass if newer else spec.code, year)
        number = self.serials.get(series, 0) + 1 + (r() < 0.1)
        self.serials[series] = number
        if newer:
            return f"{spec.klass}/{number:04d}/DPMPPTSP-DS/{month:02d}/{year}/KK"
        code = spec.code
        if code == "TDP":
            code = f"TDP-{self.one(TDP_FORMS)}"
        office = "KPPT" if year < 2017 else "DPM-PPTSP"
        return f"503/{number:04d}/{ROMAN[month - 1]}/{code}/{office}/{year}"

    def expiry(self, spec, issued):
        r = self.r
        x = r()
        if x < 0.05:
            return None
        if x < 0.1 or (spec.years == 0 and x < 0.6):
            return ZERO_DATE  # valid as long as the business runs
        if x < 0.26:
            return self.day(self.end + int(r() * 91))[2]  # due soon
        years = spec.years or 5
        return self.day(issued + years * 365 + years // 4 + int(r() * 7) - 3)[2]

    # -- generation --------------------------------------------------------

    def received_days(self):
        """Receipt days, weekdays only, with volume growing over the years."""
        r = self.r
        start = FIRST_DAY.toordinal()
        span = self.end - start
        days = []
        for _ in range(self.count):
            u = r()
            x = u if r() < 0.5 else u**0.5
            day = start + int(span * x)
            weekday = day % 7  # ordinal 1 is a Monday; 6 Saturday, 0 Sunday
            if weekday == 6:
                day -= 1
            elif weekday == 0:
                day = day + 1 if day + 1 <= self.end else day - 2
            days.append(day)
        days.sort()
        return days

    def type_tables(self):
        """Per year, the permit types on offer and their cumulative weights."""
        tables = {}
        for year in range(FIRST_DAY.year, self.today.year + 1):
            specs = [
                s
                for s in PERMIT_TYPE_SPECS
                if s.first_year <= year and (s.last_year is None or year <= s.last_year)
            ]
            tables[year] = (specs, _cumulative([s.weight for s in specs]))
        return tables

    def run(self):
        r = self.r
        tables = self.type_tables()
        kinds = [k[0] for k in APPLICATION_KINDS]
        kind_cum = _cumulative([k[2] for k in APPLICATION_KINDS])
        sequence = {}
        permits = []
        for received in self.received_days():
            year, month, received_iso = self.day(received)
            specs, cum = tables[year]
            spec = specs[bisect.bisect(cum, r() * cum[-1])]
            kind = kinds[bisect.bisect(kind_cum, r() * kind_cum[-1])]
            # gaps: applications that were rejected or withdrawn
            seq = sequence.get(year, 0) + 1 + (r() < 0.25)
            sequence[year] = seq
            issued = min(received + 1 + int(r() * (2 * spec.v_hari + 1)), self.end)
            who = self.person()
            company = self.company(received) if r() < spec.company_share else None
            permits.append(
                Permit(
                    f"{seq:05d}{spec.id:03d}{kind:02d}{month:02d}{year}",
                    spec.id,
                    kind,
                    spec.name,
                    self.no_surat(spec, issued),
                    received_iso,
                    self.day(issued)[2],
                    self.expiry(spec, issued),
                    (who,),
                    company,
                    True,
                )
            )
        self.adjust(permits)
        types = [
            {
                "id": s.id,
                "jenis_perizinan": s.name,
                "kelompok_izin": s.group,
                "v_hari": str(s.v_hari),
            }
            for s in PERMIT_TYPE_SPECS
        ]
        return Dataset(
            seed=self.seed, today=self.today, permits=permits, permit_types=types
        )

    # -- the awkward cases, with guaranteed minimums -----------------------

    def pick(self, pool, share, minimum):
        """Sample round(share * count) items of pool, at least ``minimum``."""
        k = max(round(share * self.count), minimum if self.count >= 50 else 0)
        return self.rng.sample(pool, min(k, len(pool)))

    def adjust(self, permits):
        rng = self.rng
        everyone = range(len(permits))
        for i in self.pick(everyone, 0.03, 2):
            permits[i].applicants += (self.person_other(permits[i].applicants[0]),)
        for i in self.pick(everyone, 0.04, 2):
            permits[i].listed = False  # the upstream status filter drops them
        if self.count >= 50:
            self.ensure(permits)
        eligible = [i for i in everyone if permits[i].has_village]
        chosen = self.pick(eligible, 0.011, 6)
        cut = max(1, len(chosen) // 3)
        for n, i in enumerate(chosen):
            p = permits[i]
            if n < cut:
                p.no_surat = ""  # lost during a migration
            elif n < 2 * cut:
                p.no_surat += " "
            else:
                head, tail = p.no_surat.rsplit("/", 1)
                p.no_surat = f"{head}/  {tail}"
        taken = set(chosen)
        taken.update(self.pasted_dashes(permits, eligible, taken))
        if self.count >= 50:
            self.specials(permits, taken, rng)
        # Last, so that without it a seed gives the data it always gave.
        if self.second_letters:
            self.add_second_letters(permits, taken)

    def pasted_dashes(self, permits, eligible, taken):
        """A few numbers typed in a word processor: an en dash for a separator.

        Only where the base64 then holds "+" or "/" (the characters that break
        the path form of cekperizinan): plain ASCII numbers never give them.
        """
        wanted = max(round(0.002 * self.count), 2 if self.count >= 50 else 0)
        done = []
        for i in self.rng.sample(eligible, len(eligible)):
            if len(done) >= wanted:
                break
            number = permits[i].no_surat
            if i in taken or not number:
                continue
            for at, char in enumerate(number):
                pasted = f"{number[:at]}\u2013{number[at + 1 :]}"
                if char in "-/" and set(b64(pasted)) & {"+", "/"}:
                    permits[i].no_surat = pasted
                    done.append(i)
                    break
        return done

    def add_second_letters(self, permits, taken):
        """Turn some permits into the second letter of the registration
        generated just before them: same registration, type, applicants,
        company and receipt date; a letter, issue and expiry date of their
        own (never the first letter's expiry date)."""
        wanted = max(round(self.second_letters * self.count), 2)
        pool = [
            i
            for i in range(len(permits) - 1)
            if i not in taken
            and i + 1 not in taken
            and permits[i].listed
            and permits[i + 1].listed
            and permits[i].has_village
        ]
        used = set()
        for i in self.rng.sample(pool, len(pool)):
            if wanted <= 0:
                break
            if i in used or i + 1 in used:
                continue
            used.update((i, i + 1))
            wanted -= 1
            first, second = permits[i], permits[i + 1]
            spec = next(t for t in PERMIT_TYPE_SPECS if t.id == first.type_id)
            issued = date.fromisoformat(second.tgl_surat).toordinal()
            received = date.fromisoformat(first.d_terima_berkas).toordinal()
            issued = max(issued, received + 1)
            expiry = self.expiry(spec, issued)
            if expiry == first.d_berlaku_izin:
                expiry = (
                    self.day(date.fromisoformat(expiry).toordinal() + 365)[2]
                    if expiry not in (None, ZERO_DATE)
                    else self.day(issued + 5 * 365)[2]
                )
            second.pendaftaran_id = first.pendaftaran_id
            second.type_id, second.kind_id = first.type_id, first.kind_id
            second.n_perizinan = first.n_perizinan
            second.no_surat = self.no_surat(spec, issued)
            second.d_terima_berkas = first.d_terima_berkas
            second.tgl_surat = self.day(issued)[2]
            second.d_berlaku_izin = expiry
            second.applicants = first.applicants
            second.company = first.company

    def person_other(self, first):
        while True:
            other = self.person()
            if other.n_pemohon != first.n_pemohon:
                return other

    def ensure(self, permits):
        """Every awkward case at least once, whatever the seed."""
        rng = self.rng
        today = self.today.isoformat()
        if all(p.company is not None for p in permits):
            rng.choice(permits).company = None
        if all(p.company is None or p.has_village for p in permits):
            p = rng.choice([p for p in permits if p.company is not None])
            p.company = p.company._replace(n_kecamatan=None, n_kelurahan=None)
        checks = (
            (lambda e: e == ZERO_DATE, lambda p: ZERO_DATE),
            (lambda e: e is None, lambda p: None),
            (
                lambda e: e not in (None, ZERO_DATE) and e < today,
                lambda p: self.day(self.end - rng.randrange(1, 400))[2],
            ),
            (
                lambda e: e not in (None, ZERO_DATE) and e >= today,
                lambda p: self.day(self.end + rng.randrange(0, 91))[2],
            ),
        )
        for present, make in checks:
            if not any(present(p.d_berlaku_izin) for p in permits):
                p = rng.choice(permits)
                p.d_berlaku_izin = make(p)

    def specials(self, permits, taken, rng):
        """Names and company spellings that trip up XML parsers and encoders."""
        pool = [
            i
            for i, p in enumerate(permits)
            if i not in taken and p.listed and p.has_village and len(p.applicants) == 1
        ]
        picks = rng.sample(pool, min(len(pool), 3 + len(ODD_COMPANY_FORMS)))
        marga = rng.choice(MARGA)
        for n, i in enumerate(picks):
            p = permits[i]
            who = p.applicants[0]
            if n == 0:
                p.applicants = (who._replace(n_pemohon=f"José {marga}"),)
            elif n == 1:
                p.applicants = (who._replace(n_pemohon="0"),)
            elif n == 2:
                p.company = p.company._replace(
                    a_perusahaan=f"{p.company.a_perusahaan} (Luas 36 m²)"
                )
            else:
                form = ODD_COMPANY_FORMS[n - 3]
                name = form.format(m=marga, w=rng.choice(BUSINESS_WORDS))
                p.company = p.company._replace(n_perusahaan=name)
