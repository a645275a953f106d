"""Least-squares straight lines for the measurement scripts (otel-soak.sh, heap-sites.py).

    fit(points)              -> (slope, slope's standard error, 0.0)
    fit(points, step_at=t0)  -> (slope, its error, step): one slope for all points and a level
                                step at t0 (y = a + b*x before t0, a + c + b*x from t0 on),
                                fitted together, so a one-time step is not read as a slope

Units are the points' own. The error assumes independent residuals: for series that move in
steps (RSS, per second) it understates the slope's real uncertainty.
"""


def fit(points, step_at=None):
    groups = [points] if step_at is None else [[p for p in points if p[0] < step_at], [p for p in points if p[0] >= step_at]]
    groups = [g for g in groups if g]
    n = sum(len(g) for g in groups)
    means = [(sum(x for x, _ in g) / len(g), sum(y for _, y in g) / len(g)) for g in groups]
    sxx = sum((x - m[0]) ** 2 for g, m in zip(groups, means) for x, _ in g)
    b = sum((x - m[0]) * (y - m[1]) for g, m in zip(groups, means) for x, y in g) / sxx
    res = sum((y - m[1] - b * (x - m[0])) ** 2 for g, m in zip(groups, means) for x, y in g)
    dof = n - 1 - len(groups)
    err = (res / dof / sxx) ** 0.5 if dof > 0 else float("nan")
    step = means[1][1] - means[0][1] - b * (means[1][0] - means[0][0]) if len(groups) == 2 else 0.0
    return b, err, step
