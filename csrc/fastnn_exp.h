/* exp for loops that gcc can vectorise.
 *
 * libm's exp and expf are calls, so a loop over them runs one element at a time
 * (13 ns per element in the softmax cross-entropy, most of a small batch's loss).
 * These are inline and branch-free, so a loop over them becomes vector code with
 * the build's baseline instruction set.
 *
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
 * (ln 2 in two parts, Cody and Waite, so that n ln 2 is exact enough). exp(r) is
 * Cephes' polynomial (float) or rational function (double); 2^n is built from its
 * bits, in two factors so that the results that are subnormal or overflow round
 * once, as libm's do. Error: under 2 ulp of exp computed in long double in both dtypes
 * (measured: 0.95 ulp in float, 1.6 in double; tests/test_exp.py). NaN stays NaN, -inf
 * gives 0, +inf gives +inf.
 */
#ifndef FASTNN_EXP_H
#define FASTNN_EXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float fastnn_bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t fastnn_float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline double fastnn_bits_to_double(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static inline uint64_t fastnn_double_to_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

static inline float fastnn_expf(float x)
{
    /* Beyond these bounds the result is 0 or +inf already; clamping keeps 2^n's
     * exponent in range. A NaN compares false and passes through. */
    const float magic = 12582912.0f;            /* 1.5 * 2^23: adding it rounds to an integer */
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    float shifted = x * 1.44269504088896341f + magic;
    float n = shifted - magic;
    /* n as an integer, read from the bits of the shifted sum: no float-to-int
     * conversion, which would be undefined for a NaN */
    int32_t k = (int32_t)(fastnn_float_to_bits(shifted) - fastnn_float_to_bits(magic));
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    int32_t k1 = k / 2, k2 = k - k1;             /* each in [-75, 64]: normal powers of 2 */
    float s1 = fastnn_bits_to_float((uint32_t)(k1 + 127) << 23);
    float s2 = fastnn_bits_to_float((uint32_t)(k2 + 127) << 23);
    return (y * s1) * s2;
}

static inline double fastnn_exp(double x)
{
    const double magic = 6755399441055744.0;    /* 1.5 * 2^52 */
    x = x < -746.0 ? -746.0 : x;
    x = x > 710.0 ? 710.0 : x;
    double shifted = x * 1.4426950408889634073599 + magic;
    double n = shifted - magic;
    int64_t k = (int64_t)(fastnn_double_to_bits(shifted) - fastnn_double_to_bits(magic));
    double r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    double rr = r * r;
    double p = 1.26177193074810590878e-4;
    p = p * rr + 3.02994407707441961300e-2;
    p = p * rr + 9.99999999999999999910e-1;
    p = p * r;
    double q = 3.00198505138664455042e-6;
    q = q * rr + 2.52448340349684104192e-3;
    q = q * rr + 2.27265548208155028766e-1;
    q = q * rr + 2.00000000000000000009e0;
    double y = 1.0 + 2.0 * (p / (q - p));
    /* k / 2 rounded the same way as n, so that no 64-bit shift or division is needed
     * (SSE2 has neither for vectors of int64) */
    double half = n * 0.5 + magic;
    int64_t k1 = (int64_t)(fastnn_double_to_bits(half) - fastnn_double_to_bits(magic));
    int64_t k2 = k - k1;                         /* each in [-538, 512] */
    double s1 = fastnn_bits_to_double((uint64_t)(k1 + 1023) << 52);
    double s2 = fastnn_bits_to_double((uint64_t)(k2 + 1023) << 52);
    return (y * s1) * s2;
}

/* sigmoid and tanh on top of these, for the same reason: tanhf and a branch on the
 * sign kept the activation loops scalar (an epoch of the digits network with tanh took
 * 3x one with ReLU). Every branch is computed and one is selected, so the loops
 * vectorise; NaN gives NaN. */

/* 1 / (1 + exp(-x)) from e = exp(-|x|) <= 1, so nothing overflows: 1 / (1 + e) for
 * x >= 0 and e / (1 + e) below (fastnn.reference.sigmoid's formula) */
static inline float fastnn_sigmoidf(float x)
{
    float e = fastnn_expf(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

static inline double fastnn_sigmoid(double x)
{
    double e = fastnn_exp(-fabs(x));
    return (x >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* Cephes' tanh: for |x| > 0.625, 1 - 2 / (exp(2|x|) + 1) with x's sign (no
 * cancellation there, and exp's overflow gives 1); closer to 0, an odd polynomial
 * (float) or rational function (double), exact to the last bits near 0 */
static inline float fastnn_tanhf(float x)
{
    float a = fabsf(x);
    float far = copysignf(1.0f - 2.0f / (fastnn_expf(2.0f * a) + 1.0f), x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float near = p * z * x + x;
    return a > 0.625f ? far : (a == 0 ? x : near);     /* keeps tanh(-0) = -0 */
}

static inline double fastnn_tanh(double x)
{
    double a = fabs(x);
    double far = copysign(1.0 - 2.0 / (fastnn_exp(2.0 * a) + 1.0), x);
    double z = x * x;
    double p = -9.64399179425052238628e-1;
    p = p * z - 9.92877231001918586564e1;
    p = p * z - 1.61468768441708447952e3;
    double q = z + 1.12811678491632931402e2;
    q = q * z + 2.23548839060100448583e3;
    q = q * z + 4.84406305325125486048e3;
    double near = x + x * z * (p / q);
    return a > 0.625 ? far : (a == 0 ? x : near);     /* keeps tanh(-0) = -0 */
}

#endif
