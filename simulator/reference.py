"""The clinic's reference data: providers (with a history of versions) and patients, and their tables
in schema ``clinic_ops``.

Everything is derived from the seed. Faker (seeded) only fills pools of names and addresses once; rows
are combinations drawn with our own RNG, which keeps generation fast and stable.
"""

from __future__ import annotations

import io
import random
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from faker import Faker

from simulator import profiles
from simulator.randomness import reseed, seeded
from simulator.seasonality import EPOCH_DAY, ClinicClock, allocate

PROVIDER_COLUMNS = (
    "provider_id",
    "first_name",
    "last_name",
    "specialty",
    "state",
    "years_experience",
    "hourly_rate",
    "available_hours",
    "active",
    "updated_at",
)
PATIENT_COLUMNS = (
    "patient_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "address",
    "date_of_birth",
    "gender",
    "has_insurance",
    "registration_date",
    "state",
    "updated_at",
)

DDL = """
create schema if not exists clinic_ops;
create table if not exists clinic_ops.providers (
    provider_id text primary key,
    first_name text not null,
    last_name text not null,
    specialty text not null,
    state text not null,
    years_experience integer not null,
    hourly_rate numeric(8, 2) not null,
    available_hours integer not null,
    active boolean not null,
    updated_at timestamptz not null
);
create index if not exists providers_updated_at_idx on clinic_ops.providers (updated_at);
create table if not exists clinic_ops.patients (
    patient_id text primary key,
    first_name text not null,
    last_name text not null,
    email text,
    phone text,
    address text,
    date_of_birth date not null,
    gender text not null,
    has_insurance boolean not null,
    registration_date date not null,
    state text not null,
    updated_at timestamptz not null
);
create index if not exists patients_updated_at_idx on clinic_ops.patients (updated_at);
"""

AREA_CODES = (
    "201", "212", "213", "214", "305", "312", "404", "415", "469", "503", "512", "602", "617", "646", "702",
    "704", "713", "718", "720", "773", "786", "813", "818", "832", "904", "916", "919", "949", "971", "980",
)  # fmt: skip
EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com", "proton.me", "hotmail.com")
AVAILABLE_HOURS = (8, 12, 16, 20, 24, 30, 32, 36, 40)


def weighted_picker(pairs: Iterable[tuple[object, float]]):
    """``pick(u)`` for u in [0, 1): the value whose cumulative weight bracket holds u."""
    values, cumulative, total = [], [], 0.0
    for value, weight in pairs:
        total += weight
        values.append(value)
        cumulative.append(total)
    cumulative = [c / total for c in cumulative]
    # One extra slot for a u at or above the last bound (rounding), instead of a min() on every pick; an
    # empty picker (a world without providers, in tests) stays constructible.
    values += values[-1:]

    def pick(u: float):
        return values[bisect_right(cumulative, u)]

    return pick


class Pools:
    """Names and addresses from one seeded Faker, in a fixed order: first names, last names, then streets,
    cities and zips. The addresses (two thirds of the cost) are only made when first asked for, by the same
    Faker where the names left it, so they are the same values; only the patients need them, and with two
    workers the clinic tables' process makes them while the world is already running."""

    def __init__(self, fake: Faker, female: list[str], male: list[str], last: list[str]) -> None:
        self._fake = fake
        self.female = female
        self.male = male
        self.last = last
        self._addresses: tuple[list[str], list[str], list[str]] | None = None

    @classmethod
    def build(cls, seed: int) -> Pools:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        return cls(
            fake,
            female=sorted({fake.first_name_female() for _ in range(500)}),
            male=sorted({fake.first_name_male() for _ in range(500)}),
            last=sorted({fake.last_name() for _ in range(1200)}),
        )

    def _address_pools(self) -> tuple[list[str], list[str], list[str]]:
        if self._addresses is None:
            fake = self._fake
            self._addresses = (
                [fake.street_address() for _ in range(2000)],
                [fake.city() for _ in range(600)],
                [fake.zipcode() for _ in range(600)],
            )
        return self._addresses

    @property
    def streets(self) -> list[str]:
        return self._address_pools()[0]

    @property
    def cities(self) -> list[str]:
        return self._address_pools()[1]

    @property
    def zips(self) -> list[str]:
        return self._address_pools()[2]


@dataclass
class ProviderVersion:
    updated_at: int
    specialty: str
    hourly_rate: float
    available_hours: int
    active: bool


@dataclass
class Provider:
    index: int
    provider_id: str
    first_name: str
    last_name: str
    state: str
    years_experience: int
    popularity: float
    quality: float
    versions: list[ProviderVersion] = field(default_factory=list)

    def version_at(self, epoch: int) -> ProviderVersion:
        current = self.versions[0]
        for version in self.versions:
            if version.updated_at > epoch:
                break
            current = version
        return current

    def row(self, version: ProviderVersion, clock: ClinicClock) -> tuple:
        return (
            self.provider_id,
            self.first_name,
            self.last_name,
            version.specialty,
            self.state,
            self.years_experience,
            f"{version.hourly_rate:.2f}",
            version.available_hours,
            version.active,
            clock.iso(version.updated_at),
        )


def provider_count(scale: int) -> int:
    return max(24, min(2000, scale // 200))


def patient_count(scale: int) -> int:
    return max(60, scale // 4)


def build_providers(seed: int, scale: int, pools: Pools, start_epoch: int, end_epoch: int) -> list[Provider]:
    """Providers with their version history: an initial version before the period, then changes of rate,
    hours, activity and sometimes specialty during the period and the month after it."""
    rng = seeded(seed * 7919 + 1)
    count = provider_count(scale)
    # Exact shares (largest remainder): with at least 24 providers every specialty has several.
    specialty_slots = []
    for specialty, n in zip(
        profiles.SPECIALTIES, allocate(count, list(profiles.SPECIALTY_PROVIDER_SHARE)), strict=True
    ):
        specialty_slots += [specialty] * n
    rng.shuffle(specialty_slots)
    state_pick = weighted_picker(profiles.US_STATES)
    horizon = end_epoch + 30 * 86400
    providers = []
    for index, specialty in enumerate(specialty_slots):
        female = rng.random() < 0.52
        first = rng.choice(pools.female if female else pools.male)
        lo, hi = profiles.HOURLY_RATE_RANGE[specialty]
        rate = round(rng.uniform(lo, hi) * 2) / 2
        hours = rng.choice(AVAILABLE_HOURS)
        provider = Provider(
            index=index,
            provider_id=f"PRV-{index + 1:05d}",
            first_name=first,
            last_name=rng.choice(pools.last),
            state=state_pick(rng.random()),
            years_experience=rng.randint(2, 35),
            popularity=rng.lognormvariate(0, 0.35),
            quality=rng.gauss(0, 0.15),
        )
        created = start_epoch - rng.randint(30, 900) * 86400 - rng.randint(0, 86399)
        provider.versions.append(ProviderVersion(created, specialty, rate, hours, rng.random() > 0.02))
        changes = []
        if rng.random() < 0.45:
            changes.append("rate")
        if rng.random() < 0.15:
            changes.append("rate")
        if rng.random() < 0.2:
            changes.append("hours")
        if rng.random() < 0.06:
            changes += ["leave", "return"] if rng.random() < 0.4 else ["leave"]
        if rng.random() < 0.05:
            changes.append("specialty")
        times = sorted(rng.randint(start_epoch, horizon) for _ in changes)
        for change, when in zip(changes, times, strict=True):
            prev = provider.versions[-1]
            version = ProviderVersion(when, prev.specialty, prev.hourly_rate, prev.available_hours, prev.active)
            if change == "rate":
                version.hourly_rate = round(prev.hourly_rate * (1 + rng.uniform(0.03, 0.12)) * 2) / 2
            elif change == "hours":
                version.available_hours = rng.choice(AVAILABLE_HOURS)
            elif change == "leave":
                version.active = False
            elif change == "return":
                version.active = True
            else:
                version.specialty = profiles.SPECIALTY_MOVES[prev.specialty]
            provider.versions.append(version)
        providers.append(provider)
    # Provider quality shifts ratings; centre it per specialty, weighted like bookings, so specialty means
    # stay on target.
    for specialty in profiles.SPECIALTIES:
        members = [p for p in providers if p.versions[0].specialty == specialty]
        weights = [p.popularity * p.versions[0].available_hours for p in members]
        if members:
            mean = sum(p.quality * w for p, w in zip(members, weights, strict=True)) / sum(weights)
            for p in members:
                p.quality -= mean
    return providers


class ProviderBook:
    """Chooses the provider of a new appointment: weighted by popularity and hours, active at that time."""

    def __init__(self, providers: list[Provider]) -> None:
        self.providers = providers
        self._pick = weighted_picker((p, p.popularity * p.versions[0].available_hours) for p in providers)

    def choose(self, rng: random.Random, epoch: int, specialty: str | None = None) -> tuple[Provider, ProviderVersion]:
        """An active provider at ``epoch``; of ``specialty`` when given (a colleague takes over)."""
        for _ in range(60 if specialty else 30):
            provider = self._pick(rng.random())
            version = provider.version_at(epoch)
            if version.active and (specialty is None or version.specialty == specialty):
                return provider, version
        # Practically unreachable (98% of providers are active); fall back to the first active one.
        for provider in self.providers:
            version = provider.version_at(epoch)
            if version.active:
                return provider, version
        raise RuntimeError("no active provider")


@dataclass
class Canary:
    patient_id: str
    column: str
    token: str


class Patients:
    """Patients are derived one by one from (seed, index): no list of patients is kept in memory."""

    def __init__(self, seed: int, scale: int, pools: Pools, start: date, end: date) -> None:
        self.seed = seed
        self.count = patient_count(scale)
        self.pools = pools
        self.start = start
        self.end = end
        self.state_pick = weighted_picker(profiles.US_STATES)
        self._rng = seeded(0)  # reseeded for each patient
        canary_rng = seeded(seed * 104729 + 5)
        columns = ("last_name", "email", "phone", "address", "first_name")
        picked = canary_rng.sample(range(min(self.count, 50)), len(columns))
        self.canaries: dict[int, Canary] = {}
        for index, column in zip(picked, columns, strict=True):
            token = f"{canary_rng.getrandbits(40):010x}"
            if column == "phone":
                # 555-01xx numbers are reserved for fiction: no real patient has one.
                token = f"555-01{canary_rng.randint(0, 99):02d}-{canary_rng.randint(0, 9999):04d}"
            else:
                # Lower case, so it survives the lower-casing of emails and any case-folding downstream.
                token = f"canary{token}"
            self.canaries[index] = Canary(self.patient_id(index), column, token)

    @staticmethod
    def patient_id(index: int) -> str:
        return f"PAT-{index + 1:07d}"

    def versions(self, index: int, clock: ClinicClock) -> list[tuple[int, tuple]]:
        """Every version of a patient as (updated_at epoch, row), oldest first (a few change in the period)."""
        rng = reseed(self._rng, self.seed * 1_000_003 + index)  # as seeded(...) would be, cheaper
        pools = self.pools
        r = rng.random()
        gender = "female" if r < 0.51 else "male" if r < 0.985 else "other"
        names = pools.female if gender == "female" else pools.male if gender == "male" else pools.female + pools.male
        first, last = rng.choice(names), rng.choice(pools.last)
        # Telemedicine skews adult, with a paediatric share (children are booked by a parent).
        age_days = int((rng.choice((4, 12, 28, 38, 47, 56, 66, 74)) + rng.random() * 10) * 365.25)
        date_of_birth = self.start - timedelta(days=age_days + rng.randint(0, 364))
        registration = self.start - timedelta(days=rng.randint(1, 5 * 365))
        state = self.state_pick(rng.random())
        address = f"{rng.choice(pools.streets)}, {rng.choice(pools.cities)}, {state} {rng.choice(pools.zips)}"
        number = rng.randint(1, 99)
        email = f"{first}.{last}{number}@{rng.choice(EMAIL_DOMAINS)}".lower().replace(" ", "")
        phone = f"({rng.choice(AREA_CODES)}) {rng.randint(201, 989)}-{rng.randint(0, 9999):04d}"
        insured = rng.random() < 0.88
        canary = self.canaries.get(index)
        if canary is not None:
            if canary.column == "first_name":
                first = canary.token
            elif canary.column == "last_name":
                last = canary.token
            elif canary.column == "email":
                email = f"{canary.token}@example.org"
            elif canary.column == "phone":
                phone = canary.token
            else:
                address = f"{rng.randint(10, 999)} {canary.token} Lane, {rng.choice(pools.cities)}, {state} 00000"
        registered_epoch = (registration - EPOCH_DAY).days * 86400 + rng.randint(28800, 64800)
        row = [
            self.patient_id(index),
            first,
            last,
            email,
            phone,
            address,
            date_of_birth.isoformat(),
            gender,
            insured,
            registration.isoformat(),
            state,
            clock.iso(registered_epoch),
        ]
        versions = [(registered_epoch, tuple(row))]
        if rng.random() < 0.06:
            span = ((self.end - self.start).days + 30) * 86400
            when = (self.start - EPOCH_DAY).days * 86400 + rng.randint(0, span)
            if rng.random() < 0.5 and canary is None:
                row[4] = f"({rng.choice(AREA_CODES)}) {rng.randint(201, 989)}-{rng.randint(0, 9999):04d}"
            else:
                row[8] = not row[8]
            row[11] = clock.iso(when)
            versions.append((when, tuple(row)))
        return versions


def _copy_text(rows: Iterable[tuple]) -> Iterator[str]:
    for row in rows:
        yield "\t".join(_copy_value(v) for v in row) + "\n"


def _copy_value(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


class IterStream(io.TextIOBase):
    """A read-only text stream over an iterator of strings, so COPY streams rows without a temp file."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._buffer = ""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            out, self._buffer = self._buffer, ""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readline(self, size: int = -1) -> str:  # COPY only calls read(); here for completeness
        return self.read(size)


def write_clinic_tables(conn, provider_rows: Iterable[tuple], patient_rows: Iterable[tuple]) -> None:
    """Replace the clinic tables' content with the state as of the run, in one transaction."""
    with conn, conn.cursor() as cur:
        cur.execute(DDL)
        cur.execute("truncate clinic_ops.providers, clinic_ops.patients")
        cur.copy_expert(
            f"copy clinic_ops.providers ({', '.join(PROVIDER_COLUMNS)}) from stdin",
            IterStream(_copy_text(provider_rows)),
        )
        cur.copy_expert(
            f"copy clinic_ops.patients ({', '.join(PATIENT_COLUMNS)}) from stdin",
            IterStream(_copy_text(patient_rows)),
        )
