from pathlib import Path

import pytest

from runtime.settings import EMBEDDED_KAFKA_PORT, EMBEDDED_PG_PORT, Settings, SettingsError


def test_unset_variables_mean_embedded_services():
    settings = Settings.from_env({})
    assert settings.pg_embedded and settings.kafka_embedded
    assert (settings.pg_host, settings.pg_port) == ("127.0.0.1", EMBEDDED_PG_PORT)
    assert settings.kafka_bootstrap_servers == f"127.0.0.1:{EMBEDDED_KAFKA_PORT}"
    assert settings.pg_database == "telemed"


def test_pghost_means_configured_postgres():
    settings = Settings.from_env(
        {"PGHOST": "db.internal", "PGPORT": "6543", "PGUSER": "etl", "PGPASSWORD": "s3cret", "PGDATABASE": "x"}
    )
    assert not settings.pg_embedded
    assert (settings.pg_host, settings.pg_port, settings.pg_user, settings.pg_database) == (
        "db.internal",
        6543,
        "etl",
        "x",
    )
    assert "password='s3cret'" in settings.dsn()
    assert settings.kafka_embedded


def test_database_url_wins_and_is_parsed():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u%40x:p%2Fw@h:5433/dbn", "PGHOST": "ignored"})
    assert (settings.pg_host, settings.pg_port, settings.pg_user, settings.pg_password, settings.pg_database) == (
        "h",
        5433,
        "u@x",
        "p/w",
        "dbn",
    )
    assert not settings.pg_embedded


def test_kafka_bootstrap_servers_means_configured_broker():
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    assert not settings.kafka_embedded
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"


def test_secrets_never_rendered():
    settings = Settings.from_env({"PGHOST": "h", "PGPASSWORD": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.describe()


@pytest.mark.parametrize(
    "env",
    [{"PGHOST": "h", "PGPORT": "abc"}, {"TELEMED_PG_PORT": "-1"}, {"DATABASE_URL": "mysql://h/db"}],
)
def test_malformed_values_are_clear_errors(env):
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_state_dir_override(tmp_path: Path):
    settings = Settings.from_env({"TELEMED_STATE_DIR": str(tmp_path)})
    assert settings.state_dir == tmp_path
    assert settings.landing_dir == tmp_path / "landing" / "feedback"


def test_the_landing_is_a_folder_or_an_s3_prefix(tmp_path: Path):
    default = Settings.from_env({"TELEMED_STATE_DIR": str(tmp_path)})
    assert default.landing_url == str(tmp_path / "landing" / "feedback")
    folder = Settings.from_env({"TELEMED_LANDING_DIR": str(tmp_path / "in")})
    assert (folder.landing_dir, folder.landing_url) == (tmp_path / "in", str(tmp_path / "in"))
    # TELEMED_LANDING_URL wins; a path (or file://) there is the landing folder.
    bucket = Settings.from_env({"TELEMED_LANDING_DIR": str(tmp_path / "in"), "TELEMED_LANDING_URL": "s3://forms/x/"})
    assert bucket.landing_url == "s3://forms/x/"
    path = Settings.from_env({"TELEMED_LANDING_URL": f"file://{tmp_path}/f"})
    assert (path.landing_dir, path.landing_url) == (tmp_path / "f", str(tmp_path / "f"))
    for bad in ("s3://", "s3:/forms", "gs://forms/x/"):
        with pytest.raises(SettingsError):
            Settings.from_env({"TELEMED_LANDING_URL": bad})
