"""What the test suites share: the test clock (clock.py), the fixtures for real services (fixtures.py,
loaded by the root conftest.py) and the faked-date runner (fake_dates.py)."""
