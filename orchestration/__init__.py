"""Orchestration with Apache Airflow: the DAGs (``dags/``, rendered with astronomer-cosmos), what they
share (``dagkit.py``), the steps they run in the project's environment (``steps.py``) and the local
Airflow of ``make airflow`` (``supervisor.py``). Airflow lives in an environment of its own (see
``requirements-airflow.txt``); only ``dagkit.py`` and ``dags/`` run there."""
