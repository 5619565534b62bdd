"""The embedded server's settings scale with the machine's memory within fixed bounds."""

from __future__ import annotations

from runtime import pgtuning
from runtime.settings import Settings

GB = pgtuning.GB


def test_a_quarter_for_buffers_a_512th_per_sort_within_bounds():
    assert pgtuning.server_settings(24 * GB) == {
        "shared_buffers": "4GB",  # a quarter would be 6 GB: capped
        "work_mem": "48MB",
        "maintenance_work_mem": "768MB",
        "max_wal_size": "8GB",
        "checkpoint_timeout": "15min",
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "parallel_tuple_cost": "0.01",
    }
    small = pgtuning.server_settings(GB)
    assert (small["shared_buffers"], small["work_mem"], small["maintenance_work_mem"]) == ("256MB", "4MB", "64MB")
    laptop = pgtuning.server_settings(8 * GB)
    assert (laptop["shared_buffers"], laptop["work_mem"], laptop["maintenance_work_mem"]) == ("2GB", "16MB", "256MB")


def test_a_given_budget_replaces_the_machines_memory():
    assert pgtuning.memory_for(1024) == GB
    assert pgtuning.memory_for(None) == pgtuning.machine_memory()
    assert Settings.from_env({"TELEMED_PG_MEMORY_MB": "1024"}).pg_memory_mb == 1024
    assert Settings.from_env({}).pg_memory_mb is None
    assert pgtuning.server_settings(pgtuning.memory_for(1024))["shared_buffers"] == "256MB"


def test_the_file_is_rewritten_and_included_once(tmp_path):
    conf = tmp_path / "postgresql.conf"
    conf.write_text("# initdb's file\nmax_connections = 100")
    assert pgtuning.write(tmp_path, memory=8 * GB) == [tmp_path / pgtuning.TUNING_FILE, conf]
    assert pgtuning.write(tmp_path, memory=24 * GB) == [tmp_path / pgtuning.TUNING_FILE]
    assert conf.read_text() == f"# initdb's file\nmax_connections = 100\n{pgtuning.INCLUDE_LINE}\n"
    assert "shared_buffers = '4GB'" in (tmp_path / pgtuning.TUNING_FILE).read_text()
