/* Counter-based random numbers for fastnn.
 *
 * The i-th number of a stream is SplitMix64's i-th output for the given seed,
 * computed directly from (seed, i) with no state carried between calls.  So any
 * element can be drawn on any thread, in any order, and one seed gives the same
 * numbers on every platform and at every thread count.
 * fastnn.reference computes the very same numbers with NumPy's uint64 arithmetic.
 */
#ifndef FASTNN_RNG_H
#define FASTNN_RNG_H

#include <stdint.h>

#define FASTNN_GOLDEN_GAMMA 0x9E3779B97F4A7C15ULL

static inline uint64_t fastnn_splitmix64(uint64_t seed, uint64_t index)
{
    uint64_t z = seed + (index + 1) * FASTNN_GOLDEN_GAMMA;   /* wraps mod 2^64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform double in [0, 1) from the top 53 bits: every value is exactly representable. */
static inline double fastnn_uniform(uint64_t seed, uint64_t index)
{
    return (double)(fastnn_splitmix64(seed, index) >> 11) * (1.0 / 9007199254740992.0);
}

/* fastnn_uniform(seed, index) >= p without floating point: with k the top 53 bits,
 * k * 2^-53 >= p  <=>  k >= ceil(p * 2^53), and p * 2^53 is exact (a power-of-two
 * scaling). The same decisions as comparing the doubles, several times faster. */
static inline uint64_t fastnn_keep_threshold(double p)
{
    double t = p * 9007199254740992.0;
    uint64_t k = (uint64_t)t;           /* p in [0, 1): 0 <= t < 2^53 */
    return (double)k < t ? k + 1 : k;
}

static inline int fastnn_keep(uint64_t seed, uint64_t index, uint64_t threshold)
{
    return (fastnn_splitmix64(seed, index) >> 11) >= threshold;
}

#endif
