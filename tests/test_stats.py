"""collide.stats against reference values computed independently with mpmath at 50 digits (not
against earlier code): Garwood, Wilson, the Poisson CDF and interval, Kaplan–Meier."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

mp = pytest.importorskip("mpmath")
mp.mp.dps = 50

from collide import stats  # noqa: E402


def _z(conf):
    return mp.sqrt(2) * mp.erfinv(mp.mpf(conf))


def _garwood_ref(k, conf=0.95):
    a = (1 - mp.mpf(conf)) / 2
    # P(X >= k | low) = a  and  P(X <= k | high) = a, X ~ Poisson
    def upper_tail(mu):
        return 1 - sum(mp.exp(-mu) * mu ** i / mp.factorial(i) for i in range(k))

    def cdf(mu):
        return sum(mp.exp(-mu) * mu ** i / mp.factorial(i) for i in range(k + 1))
    lo = mp.mpf(0) if k == 0 else mp.findroot(lambda m: upper_tail(m) - a, (mp.mpf(1e-6), mp.mpf(k) * 4 + 10), solver="bisect")
    hi = mp.findroot(lambda m: cdf(m) - a, (mp.mpf(1e-6), mp.mpf(k) * 4 + 30), solver="bisect")
    return lo, hi


@pytest.mark.slow
@pytest.mark.parametrize("k", [0, 1, 2, 5, 17, 60, 61, 100, 250])
def test_garwood_exact(k):
    lo, hi = stats.garwood(k)
    rlo, rhi = _garwood_ref(k)
    assert lo == pytest.approx(float(rlo), rel=1e-10, abs=1e-300)
    assert hi == pytest.approx(float(rhi), rel=1e-10)


def test_garwood_zero_is_its_own_case():
    lo, hi = stats.garwood(0, 0.95)
    assert lo == 0.0 and hi == pytest.approx(float(-mp.log(mp.mpf("0.025"))), rel=1e-14)


def test_garwood_large_count_beyond_the_old_approximation():
    # above 60 counts the earlier code used Wilson–Hilferty; the exact gamma quantile differs
    k = 1000
    a = mp.mpf("0.025")
    lo = mp.findroot(lambda m: mp.gammainc(k, 0, m, regularized=True) - a, mp.mpf(940))
    hi = mp.findroot(lambda m: mp.gammainc(k + 1, m, mp.inf, regularized=True) - a, mp.mpf(1065))
    got = stats.garwood(k)
    assert got[0] == pytest.approx(float(lo), rel=1e-11)
    assert got[1] == pytest.approx(float(hi), rel=1e-11)


def test_garwood_vectorised():
    ks = np.array([0, 3, 80, 12345])
    lo, hi = stats.garwood(ks)
    assert lo.shape == hi.shape == (4,)
    for i, k in enumerate(ks):
        assert (lo[i], hi[i]) == stats.garwood(int(k))


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (10, 10), (205, 120139), (3, 7), (0, 1)])
def test_wilson_against_closed_form(k, n):
    z = _z(0.95)
    p = mp.mpf(k) / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * mp.sqrt(p * (1 - p) / n + z * z / (4 * mp.mpf(n) ** 2)) / denom
    rlo = 0 if k == 0 else centre - half
    rhi = 1 if k == n else centre + half
    lo, hi = stats.wilson(k, n)
    assert lo == pytest.approx(float(rlo), rel=1e-12, abs=1e-300)
    assert hi == pytest.approx(float(rhi), rel=1e-12)


def test_wilson_vectorised_and_empty():
    lo, hi = stats.wilson(np.array([0, 5, 9]), np.array([0, 10, 9]))
    assert (lo[0], hi[0]) == (0.0, 1.0) and hi[2] == 1.0
    assert (lo[1], hi[1]) == stats.wilson(5, 10)


@pytest.mark.parametrize("k,mu", [(0, 0.5), (3, 2.0), (40, 35.5), (1000, 990.0)])
def test_poisson_cdf(k, mu):
    ref = sum(mp.exp(-mp.mpf(mu)) * mp.mpf(mu) ** i / mp.factorial(i) for i in range(k + 1))
    assert stats.poisson_cdf(k, mu) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("mu", [0.3, 4.0, 37.2, 2500.0])
def test_poisson_interval(mu):
    lo, hi = stats.poisson_interval(mu, 0.999)
    a = mp.mpf("0.0005")
    cdf = lambda k: mp.mpf(0) if k < 0 else mp.gammainc(k + 1, mp.mpf(mu), mp.inf, regularized=True)
    assert cdf(lo - 1) <= a < cdf(lo)          # lo is the smallest end with P(X < lo) <= a
    assert cdf(hi) >= 1 - a > cdf(hi - 1)      # hi is the smallest end with P(X > hi) <= a


def test_kaplan_meier_by_hand():
    times = [1.0, 2.0, 2.0, 5.0, None, None]
    ts, s = stats.kaplan_meier(times)
    ref = [Fraction(1), Fraction(5, 6), Fraction(5, 6) * Fraction(3, 5),
           Fraction(5, 6) * Fraction(3, 5) * Fraction(2, 3)]
    assert list(ts) == [0.0, 1.0, 2.0, 5.0]
    assert np.allclose(s, [float(x) for x in ref], rtol=1e-15)
    assert stats.kaplan_meier_quantile(times, 0.5) == 2.0
    assert stats.kaplan_meier_quantile(times, 0.9) is None
    assert stats.kaplan_meier_quantile([None, None], 0.5) is None
