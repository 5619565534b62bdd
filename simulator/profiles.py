"""The clinic's behaviour in numbers: every calibration constant of the generator lives here.

Targets come from the original design's Key Insights (``key_insights.json`` beside this file); the rest are
plausible values for a US telemedicine practice. Each mix is a tuple of (value, weight).
"""

from __future__ import annotations

import math

# Final status shares (Key Insights, % of appointments with a final status). The no-show share is
# an average: the probability rises with lead time (see NO_SHOW_BY_LEAD_DAYS).
RESCHEDULED_SHARE = 0.101
CANCELLED_SHARE = 0.102
NO_SHOW_SHARE = 0.049

DEVICES = ("Mobile Phone", "Laptop", "Desktop", "Tablet")
DEVICE_WEIGHTS = (0.36, 0.27, 0.22, 0.15)
# Key Insights: mean wait (minutes) and technical-issue share by device.
WAIT_MEAN_BY_DEVICE = {"Tablet": 14.17, "Desktop": 14.04, "Laptop": 13.91, "Mobile Phone": 13.60}
TECH_ISSUE_SHARE_BY_DEVICE = {"Tablet": 0.1704, "Mobile Phone": 0.1690, "Desktop": 0.1654, "Laptop": 0.1633}
# Gamma shape of waits: most patients wait 5-20 minutes, a few much longer.
WAIT_GAMMA_SHAPE = 2.2
TECH_ISSUE_TYPES_BY_DEVICE = {
    "Mobile Phone": (
        ("connection_drop", 0.38),
        ("audio", 0.25),
        ("video", 0.22),
        ("login", 0.12),
        ("screen_share", 0.03),
    ),
    "Tablet": (("connection_drop", 0.30), ("audio", 0.26), ("video", 0.24), ("login", 0.15), ("screen_share", 0.05)),
    "Laptop": (("audio", 0.30), ("video", 0.26), ("connection_drop", 0.20), ("login", 0.12), ("screen_share", 0.12)),
    "Desktop": (("audio", 0.32), ("video", 0.22), ("login", 0.18), ("screen_share", 0.16), ("connection_drop", 0.12)),
}
# How many technical_issue events an appointment with issues has.
ISSUE_COUNT_MIX = ((1, 0.72), (2, 0.21), (3, 0.07))
# Connection quality 1..5 (5 best): calls with technical issues are mostly poor.
QUALITY_WITH_ISSUES = ((1, 0.22), (2, 0.33), (3, 0.30), (4, 0.12), (5, 0.03))
QUALITY_WITHOUT_ISSUES = ((1, 0.01), (2, 0.03), (3, 0.14), (4, 0.40), (5, 0.42))

SPECIALTIES = ("Family Medicine", "Internal Medicine", "Pediatrics", "Psychiatry", "Cardiology", "Dermatology")
SPECIALTY_PROVIDER_SHARE = (0.25, 0.21, 0.15, 0.15, 0.13, 0.11)
# Key Insights for the first three specialties; the others are plausible neighbours.
RATING_MEANS_BY_SPECIALTY = {
    "Cardiology": (3.91, 3.51),
    "Internal Medicine": (3.61, 3.42),
    "Family Medicine": (3.77, 3.35),
    "Pediatrics": (3.95, 3.62),
    "Dermatology": (3.84, 3.55),
    "Psychiatry": (3.69, 3.47),
}
HOURLY_RATE_RANGE = {
    "Family Medicine": (110, 170),
    "Internal Medicine": (120, 185),
    "Pediatrics": (115, 175),
    "Psychiatry": (170, 260),
    "Cardiology": (210, 320),
    "Dermatology": (160, 240),
}
# Specialty changes that happen in real practices (a provider re-boards or moves department).
SPECIALTY_MOVES = {
    "Family Medicine": "Internal Medicine",
    "Internal Medicine": "Cardiology",
    "Pediatrics": "Family Medicine",
    "Psychiatry": "Family Medicine",
    "Cardiology": "Internal Medicine",
    "Dermatology": "Family Medicine",
}

APPOINTMENT_TYPES = ("initial_consultation", "follow_up", "urgent_care", "mental_health", "prescription_refill")
TYPE_MIX_BY_SPECIALTY = {
    "Family Medicine": (0.20, 0.34, 0.22, 0.04, 0.20),
    "Internal Medicine": (0.22, 0.38, 0.16, 0.02, 0.22),
    "Pediatrics": (0.22, 0.30, 0.36, 0.04, 0.08),
    "Psychiatry": (0.15, 0.25, 0.02, 0.50, 0.08),
    "Cardiology": (0.32, 0.50, 0.04, 0.00, 0.14),
    "Dermatology": (0.40, 0.42, 0.06, 0.00, 0.12),
}
# Median visit length by type (minutes) and a factor by specialty; the spread is a gamma around it.
DURATION_BY_TYPE = {
    "initial_consultation": 32.0,
    "follow_up": 19.0,
    "urgent_care": 16.0,
    "mental_health": 48.0,
    "prescription_refill": 9.0,
}
DURATION_FACTOR_BY_SPECIALTY = {
    "Family Medicine": 1.0,
    "Internal Medicine": 1.08,
    "Pediatrics": 0.92,
    "Psychiatry": 1.15,
    "Cardiology": 1.2,
    "Dermatology": 0.8,
}
DURATION_GAMMA_SHAPE = 9.0

# Lead time (days between booking and the visit) by type: ((lo, hi, weight), ...), uniform inside a range.
LEAD_DAYS_BY_TYPE = {
    "initial_consultation": ((1, 4, 0.25), (4, 10, 0.35), (10, 21, 0.28), (21, 45, 0.12)),
    "follow_up": ((1, 4, 0.15), (4, 10, 0.30), (10, 21, 0.35), (21, 45, 0.20)),
    "urgent_care": ((0.02, 0.3, 0.75), (0.3, 1.5, 0.25)),
    "mental_health": ((1, 4, 0.20), (4, 10, 0.35), (10, 21, 0.30), (21, 45, 0.15)),
    "prescription_refill": ((0.1, 1, 0.35), (1, 4, 0.45), (4, 10, 0.20)),
}
# No-show probability is NO_SHOW_SHARE * (NO_SHOW_BASE + NO_SHOW_SLOPE * lead_days) / (running mean of
# that factor), so it rises with lead time and averages NO_SHOW_SHARE whatever the lead mix.
NO_SHOW_BASE = 0.45
NO_SHOW_SLOPE = 0.055
# A rescheduled visit moves 1-14 days later; the new appointment keeps patient and type, mostly the provider.
RESCHEDULE_DAYS = (1, 14)
RESCHEDULE_SAME_PROVIDER = 0.85
CANCELLED_BY = (("patient", 0.7), ("provider", 0.16), ("clinic", 0.14))
CANCEL_REASONS = (
    "feeling better",
    "scheduling conflict",
    "provider unavailable",
    "insurance issue",
    "went to in-person care",
    None,
)
RESCHEDULE_REASONS = ("patient request", "provider schedule change", "work conflict", "childcare", None)

# Clinic hours in the clinic's time zone: appointments by local hour (quarter-hour slots).
CLINIC_TZ = "America/New_York"
HOUR_WEIGHTS = {
    7: 0.5,
    8: 2.6,
    9: 4.2,
    10: 4.4,
    11: 3.9,
    12: 2.4,
    13: 3.5,
    14: 3.9,
    15: 3.7,
    16: 3.0,
    17: 1.8,
    18: 0.9,
    19: 0.4,
}
# Day volume factors: Monday busiest, weekends and holidays quiet, a mild upward trend over the period.
WEEKDAY_FACTOR = (1.15, 1.05, 1.0, 1.0, 0.9, 0.32, 0.2)
HOLIDAY_FACTOR = 0.3
TREND_OVER_PERIOD = 0.08
# Peak hours fill the waiting room: waits scale by this factor (normalised to mean 1 over the day).
WAIT_HOUR_FACTOR = {7: 0.8, 8: 0.9, 9: 1.05, 10: 1.12, 11: 1.08, 12: 0.9, 13: 0.95, 14: 1.05, 15: 1.05}

# Feedback: share of completed visits that get a form, and how long after the visit it is submitted.
FEEDBACK_SHARE = 0.38
# ((lo_hours, hi_hours, weight), ...)
FEEDBACK_DELAY_HOURS = ((0.25, 6, 0.55), (6, 48, 0.33), (48, 240, 0.12))
EASE_OF_USE_MEAN_BY_DEVICE = {"Desktop": 4.05, "Laptop": 3.98, "Tablet": 3.8, "Mobile Phone": 3.62}
# Mean of the audio/video rating by connection quality 1..5.
AV_RATING_MEAN_BY_QUALITY = (1.7, 2.4, 3.2, 3.9, 4.4)
WOULD_RECOMMEND_BY_SATISFACTION = (0.04, 0.15, 0.48, 0.84, 0.96)
COMMENT_SHARE = 0.55
# Satisfaction shifts (zero mean over the population): issues hurt, long waits hurt a little.
SATISFACTION_ISSUE_PENALTY = 0.55
SATISFACTION_WAIT_SLOPE = -0.012

# Event delivery: most events reach the system within seconds; terminal events sent from a device
# that went offline arrive hours to days later (late data, never out of order in the clean world).
LATE_TERMINAL_SHARE = 0.015
LATE_DELAY_HOURS = (1, 72)

US_STATES = (
    ("CA", 0.12), ("TX", 0.09), ("FL", 0.07), ("NY", 0.06), ("PA", 0.04), ("IL", 0.04), ("OH", 0.035),
    ("GA", 0.033), ("NC", 0.032), ("MI", 0.03), ("NJ", 0.028), ("VA", 0.026), ("WA", 0.024), ("AZ", 0.023),
    ("MA", 0.021), ("TN", 0.021), ("IN", 0.02), ("MO", 0.019), ("MD", 0.018), ("WI", 0.018), ("CO", 0.018),
    ("MN", 0.017), ("SC", 0.016), ("AL", 0.015), ("LA", 0.014), ("KY", 0.013), ("OR", 0.013), ("OK", 0.012),
    ("CT", 0.011), ("UT", 0.01), ("IA", 0.01), ("NV", 0.01), ("AR", 0.009), ("MS", 0.009), ("KS", 0.009),
    ("NM", 0.006), ("NE", 0.006), ("ID", 0.006), ("WV", 0.005), ("HI", 0.004), ("NH", 0.004), ("ME", 0.004),
)  # fmt: skip

COMMENTS_POSITIVE = (
    "Great visit, the doctor listened and explained everything clearly.",
    "Very convenient, I did not have to take time off work.",
    "Quick and easy. The provider was kind and thorough.",
    "Excellent care, I felt heard.",
    "Smooth appointment, would book again.",
    "The doctor was on time and answered all my questions.",
    "Saved me a trip to the clinic. Really helpful.",
)
COMMENTS_NEUTRAL = (
    "It was fine, nothing special.",
    "Okay visit, a bit rushed at the end.",
    "The appointment did what I needed.",
    "Decent, but the wait was longer than expected.",
    "Average experience overall.",
)
COMMENTS_NEGATIVE = (
    "Not helpful, I still have the same problem.",
    "The provider seemed rushed and did not listen.",
    "Frustrating experience, I will go in person next time.",
    "Waited too long and the visit felt hurried.",
    "Poor experience overall.",
)
COMMENT_AUDIO = ("The audio kept cutting out.", "I could barely hear the doctor.")
COMMENT_VIDEO = ("The video froze several times.", "The picture was blurry and lagging.")


def maxent_distribution(mean: float) -> tuple[float, ...]:
    """Cumulative probabilities over 1..5 with the given mean: the maximum-entropy (exponential-family)
    distribution, so a target mean is hit exactly without the bias of rounding a clipped normal."""
    mean = min(4.95, max(1.05, mean))

    def mean_of(theta: float) -> float:
        weights = [math.exp(theta * k) for k in range(1, 6)]
        return sum(k * w for k, w in zip(range(1, 6), weights, strict=True)) / sum(weights)

    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if mean_of(mid) < mean:
            lo = mid
        else:
            hi = mid
    weights = [math.exp(lo * k) for k in range(1, 6)]
    total = sum(weights)
    cumulative, running = [], 0.0
    for weight in weights:
        running += weight / total
        cumulative.append(running)
    cumulative[-1] = 1.0
    return tuple(cumulative)


# Precomputed on a 0.01 grid from 1.0 to 5.0: rating draws are a table lookup and a short scan.
RATING_TABLE = tuple(maxent_distribution(1.0 + i / 100) for i in range(401))
