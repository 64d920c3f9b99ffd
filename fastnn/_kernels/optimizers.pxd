# One pass over a flat parameter buffer per optimizer step: PyTorch's update rules.
# Elements are independent, so the pool's threads split the buffer into chunks and the
# result does not depend on the thread count.
from cython cimport floating
from libc.math cimport sqrt, sqrtf, fabs

from fastnn._kernels.parallel cimport POOL_CHUNK, pool_for, pool_threads

cdef extern from "fastnn_adam.h":
    enum:
        FASTNN_ADAM_BLOCK
    ctypedef struct fastnn_adam_float_step:
        float step_size, epsilon, decay, weight_decay, beta2, one_minus_beta1, one_minus_beta2
        int coupled
    ctypedef struct fastnn_adam_aside:
        int count
    long fastnn_adam_hint_size(long n) noexcept nogil
    bint fastnn_adam_scan_step(long step) noexcept nogil
    const float* fastnn_adam_set_aside(float* p, const float* g, float* m, float* v,
                                       const unsigned char* hint, long n_total, long start,
                                       long n, fastnn_adam_aside* aside) noexcept nogil
    void fastnn_adam_finish(float* p, float* m, float* v, long start,
                            const fastnn_adam_aside* aside,
                            const fastnn_adam_float_step* s) noexcept nogil
    void fastnn_adam_scan(const float* p, const float* g, const float* m, const float* v,
                          unsigned char* hint, long n_total, long start, long n) noexcept nogil


cdef inline void add_penalty_gradient_range(const floating* w, floating* grad, double l1,
                                            double l2, Py_ssize_t lo,
                                            Py_ssize_t hi) noexcept nogil:
    # grad += l1 * sign(w) + 2 * l2 * w, in the parameters' dtype, as PyTorch's weight
    # decay and NumPy compute it: in float32 the loop runs 4 elements per instruction,
    # where converting each to double and back took 166 us per 235k weights, against
    # 50 us (l1 and l2: 296 against 82 us).
    cdef Py_ssize_t i
    cdef floating c = <floating>(2 * l2)
    cdef floating l1f = <floating>l1
    if l1 == 0:
        # grad + 0 + c * w is grad + c * w exactly
        for i in range(lo, hi):
            grad[i] = grad[i] + c * w[i]
        return
    for i in range(lo, hi):
        # sign(w) as (w > 0) - (w < 0): no branches, so the loop vectorises (0 for 0, NaN)
        grad[i] = grad[i] + l1f * <floating>((w[i] > 0) - (w[i] < 0)) + c * w[i]


cdef enum:
    PENALTY_LANES = 8
    PENALTY_MAX_CHUNKS = 64


cdef inline void penalty_sums_range(const floating* w, double l1, double l2, Py_ssize_t lo,
                                    Py_ssize_t hi, double* abs_sum,
                                    double* sq_sum) noexcept nogil:
    # sum|w| and sum(w^2) over [lo, hi) in double, over 8 interleaved partial sums (a
    # fixed order): one running sum would chain every addition to the last, several
    # times slower than the gradient pass. A sum whose coefficient is 0 is skipped.
    cdef Py_ssize_t b, i, j, n_full = lo + (hi - lo) - (hi - lo) % PENALTY_LANES
    cdef double a[PENALTY_LANES]
    cdef double q[PENALTY_LANES]
    for j in range(PENALTY_LANES):
        a[j] = 0
        q[j] = 0
    if l1 != 0:
        for b in range((n_full - lo) // PENALTY_LANES):
            i = lo + b * PENALTY_LANES
            for j in range(PENALTY_LANES):
                a[j] = a[j] + fabs(w[i + j])
        for i in range(n_full, hi):
            a[0] = a[0] + fabs(w[i])
    if l2 != 0:
        for b in range((n_full - lo) // PENALTY_LANES):
            i = lo + b * PENALTY_LANES
            for j in range(PENALTY_LANES):
                q[j] = q[j] + <double>w[i + j] * w[i + j]
        for i in range(n_full, hi):
            q[0] = q[0] + <double>w[i] * w[i]
    abs_sum[0] = 0
    sq_sum[0] = 0
    for j in range(PENALTY_LANES):
        abs_sum[0] += a[j]
        sq_sum[0] += q[j]


ctypedef struct PenaltyStep:
    const void* w
    void* grad
    double l1, l2
    Py_ssize_t chunk
    double abs_sums[PENALTY_MAX_CHUNKS]   # each chunk's sums, added up in chunk order
    double sq_sums[PENALTY_MAX_CHUNKS]


cdef inline void penalty_chunk_float(void* step, long lo, long hi) noexcept nogil:
    cdef PenaltyStep* s = <PenaltyStep*>step
    cdef Py_ssize_t c = lo // s.chunk
    penalty_sums_range(<const float*>s.w, s.l1, s.l2, lo, hi, &s.abs_sums[c], &s.sq_sums[c])
    add_penalty_gradient_range(<const float*>s.w, <float*>s.grad, s.l1, s.l2, lo, hi)


cdef inline void penalty_chunk_double(void* step, long lo, long hi) noexcept nogil:
    cdef PenaltyStep* s = <PenaltyStep*>step
    cdef Py_ssize_t c = lo // s.chunk
    penalty_sums_range(<const double*>s.w, s.l1, s.l2, lo, hi, &s.abs_sums[c],
                       &s.sq_sums[c])
    add_penalty_gradient_range(<const double*>s.w, <double*>s.grad, s.l1, s.l2, lo, hi)


cdef inline double penalty_step_core(const floating* w, floating* grad, double l1, double l2,
                                     Py_ssize_t n, int n_threads) noexcept nogil:
    """Return l1 * sum|w| + l2 * sum(w^2) and add its gradient l1 * sign(w) + 2 * l2 * w
    to grad, in one pass per chunk while the chunk is in cache. The sums are taken per
    chunk and added in chunk order, and chunks depend only on n, so the value does not
    depend on the thread count. From MIN_POOL_ELEMENTS on the pool shares the chunks."""
    cdef PenaltyStep s
    cdef Py_ssize_t c, n_chunks
    cdef double abs_sum = 0, sq_sum = 0
    if n <= 0:
        return 0.0
    # at most PENALTY_MAX_CHUNKS chunks, of a multiple of the lanes
    s.chunk = max(<Py_ssize_t>POOL_CHUNK, (n + PENALTY_MAX_CHUNKS - 1) // PENALTY_MAX_CHUNKS)
    s.chunk = (s.chunk + PENALTY_LANES - 1) // PENALTY_LANES * PENALTY_LANES
    n_chunks = (n + s.chunk - 1) // s.chunk
    s.w = w
    s.grad = grad
    s.l1 = l1
    s.l2 = l2
    if floating is float:
        pool_for(penalty_chunk_float, &s, n, s.chunk, pool_threads(n, n_threads))
    else:
        pool_for(penalty_chunk_double, &s, n, s.chunk, pool_threads(n, n_threads))
    for c in range(n_chunks):
        abs_sum += s.abs_sums[c]
        sq_sum += s.sq_sums[c]
    # a term whose coefficient is 0 is skipped, not computed (so 0 * inf cannot make NaN)
    return (l1 * abs_sum if l1 != 0 else 0.0) + (l2 * sq_sum if l2 != 0 else 0.0)


ctypedef struct SgdStep:
    void* param
    const void* grad
    void* momentum_buf
    double lr, momentum, dampening, weight_decay
    bint nesterov, first_step


cdef inline void sgd_range(floating* param, const floating* grad, floating* momentum_buf,
                           const SgdStep* s, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, b
    cdef floating lr = <floating>s.lr, momentum = <floating>s.momentum
    cdef floating wd = <floating>s.weight_decay, keep = <floating>(1 - s.dampening)
    # The flags are tested outside the loops: with them inside, gcc's vectorised copies
    # were not the ones that ran (see adam_range).
    if s.momentum == 0:
        if s.weight_decay != 0:
            for i in range(lo, hi):
                param[i] = param[i] - lr * (grad[i] + wd * param[i])
        else:
            for i in range(lo, hi):
                param[i] = param[i] - lr * grad[i]
        return
    if s.first_step:                    # once per fit: the buffer starts as g
        for i in range(lo, hi):
            g = grad[i] + wd * param[i] if s.weight_decay != 0 else grad[i]
            momentum_buf[i] = g
            param[i] = param[i] - lr * (g + momentum * g if s.nesterov else g)
        return
    if s.weight_decay != 0:
        for i in range(lo, hi):
            g = grad[i] + wd * param[i]
            b = momentum * momentum_buf[i] + keep * g
            momentum_buf[i] = b
            param[i] = param[i] - lr * (g + momentum * b if s.nesterov else b)
        return
    for i in range(lo, hi):
        g = grad[i]
        b = momentum * momentum_buf[i] + keep * g
        momentum_buf[i] = b
        param[i] = param[i] - lr * (g + momentum * b if s.nesterov else b)


cdef inline void sgd_chunk_float(void* step, long lo, long hi) noexcept nogil:
    cdef SgdStep* s = <SgdStep*>step
    sgd_range(<float*>s.param, <const float*>s.grad, <float*>s.momentum_buf, s, lo, hi)


cdef inline void sgd_chunk_double(void* step, long lo, long hi) noexcept nogil:
    cdef SgdStep* s = <SgdStep*>step
    sgd_range(<double*>s.param, <const double*>s.grad, <double*>s.momentum_buf, s, lo, hi)


cdef inline void sgd_step_core(floating* param, const floating* grad, floating* momentum_buf,
                               double lr, double momentum, double dampening, bint nesterov,
                               double weight_decay, bint first_step,
                               Py_ssize_t n, int n_threads) noexcept nogil:
    """torch.optim.SGD: g = grad + wd * p; buf = g on the first step, else
    momentum * buf + (1 - dampening) * g; g = g + momentum * buf (Nesterov) or buf;
    p -= lr * g. From MIN_POOL_ELEMENTS on, the pool's worker shares the chunks."""
    cdef SgdStep s
    s.param = param
    s.grad = grad
    s.momentum_buf = momentum_buf
    s.lr = lr
    s.momentum = momentum
    s.dampening = dampening
    s.weight_decay = weight_decay
    s.nesterov = nesterov
    s.first_step = first_step
    if floating is float:
        pool_for(sgd_chunk_float, &s, n, POOL_CHUNK, pool_threads(n, n_threads))
    else:
        pool_for(sgd_chunk_double, &s, n, POOL_CHUNK, pool_threads(n, n_threads))


ctypedef struct AdamStep:
    # one step's constants, in double: each converts to the parameters' dtype where used
    void* param
    const void* grad
    void* exp_avg
    void* exp_avg_sq
    double step_size, epsilon, decay, weight_decay, beta2, one_minus_beta1, one_minus_beta2
    bint coupled        # weight decay added to the gradient (Adam), not p *= decay
    # float32: the hint of fastnn_adam.h (NULL: none), its element count, and whether this
    # step rescans it
    unsigned char* hint
    long n_total
    bint scan


cdef inline floating adam_moments(floating g, floating* m_io, floating* v_io, floating b2,
                                  floating one_minus_b1, floating one_minus_b2,
                                  floating step_size, floating epsilon) noexcept nogil:
    """Advance one element's moments by its gradient g; return its step,
    step_size * m / (sqrt(v) + epsilon). Inlined into both loops of adam_range."""
    cdef floating m = m_io[0] + one_minus_b1 * (g - m_io[0])     # PyTorch's lerp form
    cdef floating v = b2 * v_io[0] + one_minus_b2 * g * g
    m_io[0] = m
    v_io[0] = v
    if floating is float:
        return step_size * (m / (sqrtf(v) + epsilon))
    else:
        return step_size * (m / (sqrt(v) + epsilon))


cdef inline void adam_range(floating* param, const floating* grad, floating* exp_avg,
                            floating* exp_avg_sq, const AdamStep* s, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    # In the parameters' dtype throughout, as PyTorch computes: float32 stays float32,
    # and the loop vectorises. One loop per place of the weight decay: with the branch
    # inside, gcc's vectorised copies were not the ones that ran (2.2 against 0.9 ns per
    # float32 element).
    cdef Py_ssize_t i
    cdef floating step_size = <floating>s.step_size, epsilon = <floating>s.epsilon
    cdef floating decay = <floating>s.decay, wd = <floating>s.weight_decay
    cdef floating b2 = <floating>s.beta2
    cdef floating one_minus_b1 = <floating>s.one_minus_beta1
    cdef floating one_minus_b2 = <floating>s.one_minus_beta2
    if s.coupled:
        for i in range(lo, hi):
            param[i] = param[i] - adam_moments(grad[i] + wd * param[i], &exp_avg[i],
                                               &exp_avg_sq[i], b2, one_minus_b1,
                                               one_minus_b2, step_size, epsilon)
        return
    # decay is 1 unless decoupled, and p * 1 is p exactly
    for i in range(lo, hi):
        param[i] = param[i] * decay - adam_moments(grad[i], &exp_avg[i], &exp_avg_sq[i], b2,
                                                   one_minus_b1, one_minus_b2, step_size,
                                                   epsilon)


cdef inline void adam_chunk_float(void* step, long lo, long hi) noexcept nogil:
    # With a hint, block by block: the flagged elements are set aside before the loop and
    # updated in double after it (csrc/fastnn_adam.h). Chunks start at multiples of
    # POOL_CHUNK, a multiple of FASTNN_ADAM_BLOCK, so blocks fall on the hint's blocks.
    cdef AdamStep* s = <AdamStep*>step
    cdef float* p = <float*>s.param
    cdef const float* g = <const float*>s.grad
    cdef float* m = <float*>s.exp_avg
    cdef float* v = <float*>s.exp_avg_sq
    cdef const float* block_grad
    cdef fastnn_adam_aside aside
    cdef fastnn_adam_float_step fs
    cdef long b = lo, n
    if s.hint == NULL:
        adam_range(p, g, m, v, s, lo, hi)
        return
    fs.step_size = <float>s.step_size
    fs.epsilon = <float>s.epsilon
    fs.decay = <float>s.decay
    fs.weight_decay = <float>s.weight_decay
    fs.beta2 = <float>s.beta2
    fs.one_minus_beta1 = <float>s.one_minus_beta1
    fs.one_minus_beta2 = <float>s.one_minus_beta2
    fs.coupled = s.coupled
    while b < hi:
        n = min(<long>FASTNN_ADAM_BLOCK, hi - b)
        block_grad = fastnn_adam_set_aside(p, g, m, v, s.hint, s.n_total, b, n, &aside)
        adam_range(p + b, block_grad, m + b, v + b, s, 0, n)
        if aside.count:
            fastnn_adam_finish(p, m, v, b, &aside, &fs)
        if s.scan:
            fastnn_adam_scan(p, g, m, v, s.hint, s.n_total, b, n)
        b += n


cdef inline void adam_chunk_double(void* step, long lo, long hi) noexcept nogil:
    cdef AdamStep* s = <AdamStep*>step
    adam_range(<double*>s.param, <const double*>s.grad, <double*>s.exp_avg,
               <double*>s.exp_avg_sq, s, lo, hi)


cdef inline void adam_step_core(floating* param, const floating* grad, floating* exp_avg,
                                floating* exp_avg_sq, double lr, double beta1, double beta2,
                                double eps, double weight_decay, bint decoupled, long step,
                                Py_ssize_t n, int n_threads,
                                unsigned char* hint=NULL,
                                bint eps_on_raw_moment=False) noexcept nogil:
    """torch.optim.Adam (weight decay added to the gradient) or AdamW (decoupled:
    p *= 1 - lr * wd), with bias correction; step counts from 1.

    PyTorch divides twice per element: p -= lr / c1 * m / (sqrt(v) / sqrt(c2) + eps).
    Here sqrt(c2) multiplies lr / c1 and eps once per step instead (the reordering
    Kingma and Ba suggest, with eps scaled to keep PyTorch's update), which is the same
    update to rounding: each element then costs one square root and one division. Those
    two units are what bounds this loop (the loads and stores are cheaper), so the step
    is about a quarter faster (float32 batch-32 epoch: 0.37-0.57 against 0.56-0.76 s of
    optimizer steps; float64 batch 128: 0.25-0.28 against 0.37-0.41 s). For the same
    reason a second core pays: from MIN_POOL_ELEMENTS on, the pool's worker shares the
    chunks (fastnn_pool.h). Alone, 235k parameters took 96-97 against 143-148 us per
    step in float32 and 225-232 against 438-584 us in float64; 65,536 float32 ones
    32 against 39 us.

    hint (float32 only, fastnn_adam_hint_size(n) bytes, zeros at first, kept between
    steps; NULL for none) steers the elements whose values are tiny, on their way to
    subnormal, around the vector loop (csrc/fastnn_adam.h). The results do not depend
    on it: a batch-32 epoch of the bench's MLP ended with some 3,000 subnormal first
    moments, and its steps took 0.31-0.37 s against 0.46-0.51 s without.

    eps_on_raw_moment: eps is added to sqrt(v), not to sqrt(v / c2), as scikit-learn's
    Adam does (p -= lr * sqrt(c2) / c1 * m / (sqrt(v) + eps)): eps is then not scaled."""
    cdef double bias_correction2_sqrt = sqrt(1 - beta2 ** step)
    cdef AdamStep s
    s.param = param
    s.grad = grad
    s.exp_avg = exp_avg
    s.exp_avg_sq = exp_avg_sq
    s.step_size = lr / (1 - beta1 ** step) * bias_correction2_sqrt
    s.epsilon = eps if eps_on_raw_moment else eps * bias_correction2_sqrt
    s.decay = 1 - lr * weight_decay if decoupled else 1
    s.weight_decay = weight_decay
    s.beta2 = beta2
    s.one_minus_beta1 = 1 - beta1
    s.one_minus_beta2 = 1 - beta2
    s.coupled = not decoupled and weight_decay != 0
    s.hint = hint if floating is float else NULL
    s.n_total = n
    s.scan = fastnn_adam_scan_step(step)
    if floating is float:
        pool_for(adam_chunk_float, &s, n, POOL_CHUNK, pool_threads(n, n_threads))
    else:
        pool_for(adam_chunk_double, &s, n, POOL_CHUNK, pool_threads(n, n_threads))
