"""The pseudonym key: HMAC pads that Postgres turns into the same patient_key as Python's hmac."""

from __future__ import annotations

import stat

from runtime import db, pseudonym


def test_generated_key_is_private_and_stable(tmp_path):
    first = pseudonym.key_bytes(tmp_path, env={})
    assert len(first) == 64
    assert stat.S_IMODE((tmp_path / pseudonym.KEY_FILE).stat().st_mode) == 0o600
    assert pseudonym.key_bytes(tmp_path, env={}) == first
    assert pseudonym.key_bytes(tmp_path, env={pseudonym.KEY_ENV: "x" * 20}) == b"x" * 20


def test_pgoptions_replace_their_own_pads_and_keep_others():
    once = pseudonym.pgoptions(b"k" * 20, "-c search_path=raw")
    twice = pseudonym.pgoptions(b"k" * 20, once)
    assert twice == once
    assert twice.startswith("-c search_path=raw -c telemed.pseudonym_ipad=")


def test_postgres_computes_the_same_hmac(settings):
    """The SQL of macro pseudonymous_key, on a session that got the pads through PGOPTIONS."""
    key = b"a key long enough for the test, and longer than sixty-four bytes so it is hashed first"
    expected = {pid: pseudonym.patient_key(key, pid) for pid in ("PAT-0000001", "PAT-ÄÖ-9", "")}
    conn = db.connect(settings, options=pseudonym.pgoptions(key))
    try:
        with conn.cursor() as cur:
            for pid, want in expected.items():
                cur.execute(
                    "select encode(sha256(decode(current_setting('telemed.pseudonym_opad'), 'hex')"
                    " || sha256(decode(current_setting('telemed.pseudonym_ipad'), 'hex') || convert_to(%s, 'UTF8'))),"
                    " 'hex')",
                    (pid,),
                )
                assert cur.fetchone()[0] == want
    finally:
        conn.close()
