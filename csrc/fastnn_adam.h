/* Adam's float32 step kept clear of subnormal arithmetic, bit for bit the plain loop's.
 *
 * Why: on x86 a multiply or divide whose input or output is subnormal takes a microcode
 * assist, 10-14 ns per element here against 0.1 ns (additions, subtractions and
 * conversions take none). Adam makes such numbers: the first moment of a weight whose
 * gradient stays 0 (the weights of a dead ReLU unit) shrinks by beta1 per step and, some
 * 750 steps later, is subnormal for good, since rounding stops the decay at a few units
 * of 2^-149. After a batch-32 epoch of the bench's MLP (nn.Linear's default
 * initialisation) 2,845 of its 235,146 first moments were subnormal, spread over as
 * many vectors of the loop, each of which then took three assists per step.
 *
 * How: a hint array holds one byte per element, 1 where the element's weight, first or
 * second moment or gradient was nonzero and tiny (below FASTNN_ADAM_TINY, the gradient
 * below FASTNN_ADAM_TINY_GRAD) when last scanned, then one byte per block of
 * FASTNN_ADAM_BLOCK elements, 1 when any of the block's bytes is. The scan runs after
 * the update every FASTNN_ADAM_SCAN_EVERY steps. Each step, the flagged elements of a
 * block are set aside: the vector loop (the caller's) reads 0 for their four values, so
 * no lane of it is subnormal, and afterwards each is updated alone in double arithmetic,
 * rounding to float after each operation. That gives the float result: a product of two
 * floats is exact in double, and for a sum, quotient or square root rounding twice (to
 * double, then to float) gives the float result because 53 >= 2 * 24 + 2 (Figueroa,
 * 1995), in the subnormal range too; nothing in double is subnormal there.
 *
 * The hint only decides the path: any element, flagged or not, gets the same bits. A
 * moment turns tiny hundreds of steps before it is subnormal, so a scan every few steps
 * is early enough for it; a gradient that turns subnormal between two scans still takes
 * its assists until the next. */
#ifndef FASTNN_ADAM_H
#define FASTNN_ADAM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* From these magnitudes up (and at 0) the weight, first and second moment, and gradient
 * of an element keep the vector loop clear of subnormals, unless sqrt(v) is huge (above
 * about 1e6) */
#define FASTNN_ADAM_TINY 1e-27f
#define FASTNN_ADAM_TINY_GRAD 1e-15f
/* elements per block; a block's set-aside elements are held on the stack, and callers'
 * chunks start at multiples of it */
#define FASTNN_ADAM_BLOCK 1024
#define FASTNN_ADAM_SCAN_EVERY 16

typedef struct {
    float step_size, epsilon, decay, weight_decay, beta2, one_minus_beta1, one_minus_beta2;
    int coupled;   /* weight decay added to the gradient (Adam), else p *= decay (AdamW) */
} fastnn_adam_float_step;

typedef struct {
    int count;
    int index[FASTNN_ADAM_BLOCK];   /* from the block's start */
    float p[FASTNN_ADAM_BLOCK], g[FASTNN_ADAM_BLOCK], m[FASTNN_ADAM_BLOCK], v[FASTNN_ADAM_BLOCK];
    float grad[FASTNN_ADAM_BLOCK];  /* the block's gradients, with 0 for the set-aside ones */
} fastnn_adam_aside;

/* bytes of the hint for n elements */
static inline long fastnn_adam_hint_size(long n) {
    return n + (n + FASTNN_ADAM_BLOCK - 1) / FASTNN_ADAM_BLOCK;
}

static inline int fastnn_adam_scan_step(long step) {
    return step % FASTNN_ADAM_SCAN_EVERY == 1;
}

/* A double the compiler cannot see is a widened float: without this, gcc turns
 * (float)((double)a * (double)b) back into a float multiply, with its assist. */
static inline double fastnn_adam_wide(float x) {
    double d = x;
#if defined(__GNUC__) && defined(__x86_64__)
    __asm__("" : "+x"(d));
#endif
    return d;
}

#define FASTNN_ADAM_F(x) fastnn_adam_wide((float)(x))

/* Before the vector loop over block [start, start + n) of n_total elements: set aside the
 * flagged elements, with 0 in place of their four values. Returns the gradients the loop
 * is to read for the block (from its start): g's own, or a copy with those zeros, since
 * g is not ours to write. */
static const float *fastnn_adam_set_aside(float *p, const float *g, float *m, float *v,
                                          const unsigned char *hint, long n_total,
                                          long start, long n, fastnn_adam_aside *aside) {
    long i, j, end;
    aside->count = 0;
    if (!hint[n_total + start / FASTNN_ADAM_BLOCK])
        return g + start;
    memcpy(aside->grad, g + start, (size_t)n * sizeof(float));
    for (i = 0; i < n; i += 8) {
        uint64_t word;
        end = i + 8 < n ? i + 8 : n;
        if (end - i == 8) {    /* eight flags in one load (a constant size: no byte loop) */
            memcpy(&word, hint + start + i, 8);
            if (!word)
                continue;
        }
        for (j = i; j < end; j++) {
            if (hint[start + j]) {
                int k = aside->count++;
                aside->index[k] = (int)j;
                aside->p[k] = p[start + j];
                aside->g[k] = g[start + j];
                aside->m[k] = m[start + j];
                aside->v[k] = v[start + j];
                p[start + j] = m[start + j] = v[start + j] = aside->grad[j] = 0.0f;
            }
        }
    }
    return aside->grad;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* Two lanes of the double path: the conversion intrinsics are opaque to the compiler,
 * so no barrier is needed, and two elements share each instruction. One element alone
 * is a chain of some twenty dependent operations, a square root and a division among
 * them. With 2,000 of 7,510 elements set aside, each cost 32-45 ns one by one and
 * 15-21 ns in pairs (setting aside included); the digits MLP ends its 200 epochs with
 * 636 such elements. */
static inline __m128d fastnn_adam_round2(__m128d x) {
    return _mm_cvtps_pd(_mm_cvtpd_ps(x));
}

static inline __m128d fastnn_adam_load2(const float *x) {
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)x)));
}

/* set-aside elements k and k + 1 of a block from `start` (see fastnn_adam_finish) */
static inline void fastnn_adam_finish2(float *p, float *m, float *v, long start,
                                       const fastnn_adam_aside *aside, int k,
                                       const fastnn_adam_float_step *s) {
    const __m128d step = _mm_set1_pd(s->step_size), eps = _mm_set1_pd(s->epsilon);
    const __m128d b2 = _mm_set1_pd(s->beta2), omb1 = _mm_set1_pd(s->one_minus_beta1);
    const __m128d omb2 = _mm_set1_pd(s->one_minus_beta2);
    __m128d P = fastnn_adam_load2(aside->p + k), G = fastnn_adam_load2(aside->g + k);
    __m128d M = fastnn_adam_load2(aside->m + k), V = fastnn_adam_load2(aside->v + k);
    __m128d mn, vn, den, u;
    float out[3][4];
    int lane;
    if (s->coupled)
        G = fastnn_adam_round2(_mm_add_pd(G, fastnn_adam_round2(
                _mm_mul_pd(_mm_set1_pd(s->weight_decay), P))));
    mn = fastnn_adam_round2(_mm_add_pd(M, fastnn_adam_round2(
             _mm_mul_pd(omb1, fastnn_adam_round2(_mm_sub_pd(G, M))))));
    vn = fastnn_adam_round2(_mm_add_pd(
             fastnn_adam_round2(_mm_mul_pd(b2, V)),
             fastnn_adam_round2(_mm_mul_pd(fastnn_adam_round2(_mm_mul_pd(omb2, G)), G))));
    den = fastnn_adam_round2(_mm_add_pd(fastnn_adam_round2(_mm_sqrt_pd(vn)), eps));
    u = fastnn_adam_round2(_mm_mul_pd(step, fastnn_adam_round2(_mm_div_pd(mn, den))));
    if (!s->coupled)
        P = fastnn_adam_round2(_mm_mul_pd(P, _mm_set1_pd(s->decay)));
    _mm_storeu_ps(out[0], _mm_cvtpd_ps(_mm_sub_pd(P, u)));
    _mm_storeu_ps(out[1], _mm_cvtpd_ps(mn));
    _mm_storeu_ps(out[2], _mm_cvtpd_ps(vn));
    for (lane = 0; lane < 2; lane++) {
        long i = start + aside->index[k + lane];
        p[i] = out[0][lane];
        m[i] = out[1][lane];
        v[i] = out[2][lane];
    }
}
#endif

/* After the vector loop: the set-aside elements from their values before the step, with
 * the loop's operations in its order:
 *   g += wd * p (coupled);  m += (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g;
 *   p = p * decay - step * (m / (sqrt(v) + eps))  (p - step * ... when coupled). */
static void fastnn_adam_finish(float *p, float *m, float *v, long start,
                               const fastnn_adam_aside *aside,
                               const fastnn_adam_float_step *s) {
    double step = fastnn_adam_wide(s->step_size), eps = fastnn_adam_wide(s->epsilon);
    double decay = fastnn_adam_wide(s->decay), wd = fastnn_adam_wide(s->weight_decay);
    double b2 = fastnn_adam_wide(s->beta2), omb1 = fastnn_adam_wide(s->one_minus_beta1);
    double omb2 = fastnn_adam_wide(s->one_minus_beta2);
    int k = 0;
#if defined(__SSE2__)
    for (; k + 2 <= aside->count; k += 2)
        fastnn_adam_finish2(p, m, v, start, aside, k, s);
#endif
    for (; k < aside->count; k++) {
        long i = start + aside->index[k];
        double P = fastnn_adam_wide(aside->p[k]), G = fastnn_adam_wide(aside->g[k]);
        double M = fastnn_adam_wide(aside->m[k]), V = fastnn_adam_wide(aside->v[k]);
        double mn, vn, den, u;
        if (s->coupled)
            G = FASTNN_ADAM_F(G + FASTNN_ADAM_F(wd * P));
        mn = FASTNN_ADAM_F(M + FASTNN_ADAM_F(omb1 * FASTNN_ADAM_F(G - M)));
        vn = FASTNN_ADAM_F(FASTNN_ADAM_F(b2 * V) + FASTNN_ADAM_F(FASTNN_ADAM_F(omb2 * G) * G));
        den = FASTNN_ADAM_F(FASTNN_ADAM_F(sqrt(vn)) + eps);
        u = FASTNN_ADAM_F(step * FASTNN_ADAM_F(mn / den));
        if (!s->coupled)
            P = FASTNN_ADAM_F(P * decay);
        p[i] = (float)(P - u);
        m[i] = (float)mn;
        v[i] = (float)vn;
    }
}

static inline unsigned char fastnn_adam_is_tiny(float x, float limit) {
    return (unsigned char)((fabsf(x) < limit) & (x != 0.0f));
}

/* Flag the elements of block [start, start + n) with a tiny value after the step: the
 * step's gradient, or the weight or moments it produced. */
static void fastnn_adam_scan(const float *p, const float *g, const float *m, const float *v,
                             unsigned char *hint, long n_total, long start, long n) {
    unsigned char any = 0;
    long i;
    for (i = start; i < start + n; i++) {
        unsigned char tiny = fastnn_adam_is_tiny(p[i], FASTNN_ADAM_TINY)
                             | fastnn_adam_is_tiny(g[i], FASTNN_ADAM_TINY_GRAD)
                             | fastnn_adam_is_tiny(m[i], FASTNN_ADAM_TINY)
                             | fastnn_adam_is_tiny(v[i], FASTNN_ADAM_TINY);
        hint[i] = tiny;
        any |= tiny;
    }
    hint[n_total + start / FASTNN_ADAM_BLOCK] = any;
}

#endif
