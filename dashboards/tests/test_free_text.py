"""Patients' free text stays out of the offline HTML dashboards (they travel by e-mail) unless asked for:
a canary comment, planted in the newest form of the real marts, is in no page by default and is there with
``include_comments``; the comments card still shows its other columns."""

from __future__ import annotations

import json

from dashboards.__main__ import build_html
from runtime import db

CANARY = "Qzvcommentcanary"


def test_comments_are_left_out_of_the_html_unless_asked(marts_settings, tmp_path):
    conn = db.connect(marts_settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "select feedback_id, comments from marts.fact_feedback"
                " where nullif(trim(comments), '') is not null order by timestamp desc, feedback_id limit 1"
            )
            feedback_id, original = cur.fetchone()
            cur.execute("update marts.fact_feedback set comments = %s where feedback_id = %s", (CANARY, feedback_id))
        build_html(marts_settings, tmp_path / "default")
        build_html(marts_settings, tmp_path / "with", include_comments=True)
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("update marts.fact_feedback set comments = %s where feedback_id = %s", (original, feedback_id))
        conn.close()

    def pages(folder) -> dict[str, str]:
        return {p.name: p.read_text() for p in folder.glob("*.html")}

    default, included = pages(tmp_path / "default"), pages(tmp_path / "with")
    assert default and not [name for name, text in default.items() if CANARY in text]
    assert [name for name, text in included.items() if CANARY in text]
    satisfaction = next(text for name, text in default.items() if "recent_comments" in text)
    spec = json.loads(satisfaction.split('id="dashboard-data">', 1)[1].split("</script>", 1)[0])
    card = next(c for c in spec["cards"] if c["key"] == "recent_comments")
    # Cards reading the same SQL share one embedded copy of the rows: the card names its dataset.
    assert card["state"] == "ok" and spec["datasets"][card["dataset"]], card["message"]
    assert "comments" not in card["columns"] and "comments" not in card["visualization"]["columns"]
    assert "comments left out" in satisfaction
