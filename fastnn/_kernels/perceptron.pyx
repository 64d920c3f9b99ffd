"""Rosenblatt's perceptron rule, scikit-learn's way, compiled.

This is the update loop of scikit-learn's ``_plain_sgd`` specialised to what
``sklearn.linear_model.Perceptron`` uses: the perceptron loss max(0, -y p) with a
constant learning rate eta0, optional L2 / L1 / elastic-net penalty (L2 as weight
decay, L1 by the truncated gradient of Tsuruoka et al. 2009), per-class and
per-sample weights, a per-epoch stopping test on the training objective or on the
validation accuracy, and several binary one-vs-rest problems trained side by side
(independent problems, so the result does not depend on the thread count).

Shuffling uses fastnn's counter-based SplitMix64 (csrc/fastnn_rng.h), not NumPy's
generator: same seed, same order, on every platform.

Per-problem state lives in a small float64 row so a fit can be run one epoch per
call (for ``verbose`` progress) or all epochs in one call, with identical results.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, fabs, isfinite
from libc.stdint cimport uint64_t

cdef extern from "fastnn_rng.h":
    uint64_t fastnn_splitmix64(uint64_t seed, uint64_t index) nogil

# Penalty codes (as scikit-learn's PENALTY_TYPES).
cdef enum:
    NO_PENALTY = 0
    L1 = 1
    L2 = 2
    ELASTICNET = 3

# Layout of one problem's state row (float64).
cdef enum:
    S_T = 0            # scikit-learn's t: 1 + number of updates seen (input and output)
    S_U = 1            # accumulated L1 penalty (truncated gradient)
    S_BEST = 2         # best objective (lower is better) or best validation score
    S_NO_IMPROVE = 3   # epochs in a row without improvement by tol
    S_EPOCHS = 4       # epochs run so far in this fit
    S_DONE = 5         # 1 once the stopping rule fired
    S_SUMLOSS = 6      # last epoch: summed perceptron loss over training rows
    S_OBJECTIVE = 7    # last epoch: summed objective (loss + penalty)
    S_SCORE = 8        # last epoch: validation accuracy (early stopping)
    S_NONFINITE = 9    # 1 if weights over/underflowed
    S_SQ = 10          # tracked |w|^2 and |w|_1, as scikit-learn's WeightVector: set at
    S_L1 = 11          # the start of a fit, scaled with w, recomputed after each update,
    S_NORMS_SET = 12   # but not after the L1 truncation; they only feed the objective
    N_STATE = 13


cdef inline double dot(const floating* x, const floating* w, Py_ssize_t d) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t j
    for j in range(d):
        s += x[j] * w[j]
    return s


cdef inline double l1norm(const floating* w, Py_ssize_t d) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t j
    for j in range(d):
        s += fabs(w[j])
    return s


cdef inline double sqnorm(const floating* w, Py_ssize_t d) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t j
    for j in range(d):
        s += w[j] * w[j]
    return s


cdef inline bint all_finite(const floating* w, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(d):
        if not isfinite(w[j]):
            return False
    return True


cdef inline void l1_clip(floating* w, floating* q, Py_ssize_t j, double u) noexcept nogil:
    """Clip weight j towards zero by the L1 penalty not yet applied to it (u is the
    total so far, q[j] what weight j has received), never across zero."""
    cdef double z = w[j]
    if z > 0.0:
        w[j] = max(0.0, z - (u + q[j]))
    elif z < 0.0:
        w[j] = min(0.0, z + (u - q[j]))
    q[j] += w[j] - z


cdef void l1_truncate(floating* w, floating* q, Py_ssize_t d, double u) noexcept nogil:
    """l1_clip over every weight."""
    cdef Py_ssize_t j
    for j in range(d):
        l1_clip(w, q, j, u)


cdef inline double dot_sparse(const floating* x, const Py_ssize_t* ind, Py_ssize_t nnz,
                              const floating* w) noexcept nogil:
    """w . x over the row's stored entries (in stored order, as scikit-learn's
    WeightVector.dot)."""
    cdef double s = 0.0
    cdef Py_ssize_t jj
    for jj in range(nnz):
        s += w[ind[jj]] * x[jj]
    return s


cdef void l1_truncate_sparse(floating* w, floating* q, const Py_ssize_t* ind,
                             Py_ssize_t nnz, double u) noexcept nogil:
    """l1_truncate over the features stored in the current row only (scikit-learn's
    l1penalty walks the row's indices: for dense X that is every feature, for sparse
    X only the stored ones, explicit zeros included)."""
    cdef Py_ssize_t jj
    for jj in range(nnz):
        l1_clip(w, q, ind[jj], u)


cdef void shuffle_rows(Py_ssize_t* order, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """Fisher-Yates over the current order with the first n - 1 draws of the seed's
    SplitMix64 stream.

    As in scikit-learn (its SequentialDataset.shuffle gets the same seed every epoch),
    every epoch applies the *same* random permutation to the previous epoch's order,
    so the visiting orders are P, P^2, P^3, ... This matters for the perceptron: on
    data that are not linearly separable the rule never settles, and the periodic
    orders let the stopping test see the objective repeat; with fresh shuffles every
    epoch the accuracy on e.g. iris comes out lower on average.
    """
    cdef Py_ssize_t i, k, tmp
    for i in range(n - 1, 0, -1):
        # modulo bias is below 2**-40 for any realistic n
        k = <Py_ssize_t>(fastnn_splitmix64(seed, <uint64_t>(n - 1 - i)) % <uint64_t>(i + 1))
        tmp = order[i]
        order[i] = order[k]
        order[k] = tmp


cdef double validation_accuracy(const floating* X, const Py_ssize_t* ind,
                                const Py_ssize_t* indptr, Py_ssize_t n, Py_ssize_t d,
                                const floating* y, const floating* sw,
                                const unsigned char* val_mask,
                                const floating* w, double b) noexcept nogil:
    """Weighted accuracy of sign(w.x + b) (0 counts as -1) on the validation rows."""
    cdef Py_ssize_t i
    cdef double hit = 0.0, total = 0.0, p, label
    for i in range(n):
        if not val_mask[i]:
            continue
        if indptr == NULL:
            p = dot(&X[i * d], w, d) + b
        else:
            p = dot_sparse(&X[indptr[i]], &ind[indptr[i]], indptr[i + 1] - indptr[i], w) + b
        label = 1.0 if p > 0.0 else -1.0
        total += sw[i]
        if label == y[i]:
            hit += sw[i]
    return hit / total if total > 0.0 else 0.0


cdef void perceptron_epochs(
        const floating* X,               # IN (n, d) C-order, or the CSR data
        const Py_ssize_t* ind,           # IN CSR column indices (NULL: X is dense)
        const Py_ssize_t* indptr,        # IN (n + 1,) CSR row pointers (NULL: X is dense)
        Py_ssize_t n, Py_ssize_t d,
        const floating* y,               # IN (n,) +1 / -1
        const floating* sw,              # IN (n,) sample weights
        const unsigned char* val_mask,   # IN (n,) 1 = held out for early stopping
        Py_ssize_t n_train,
        floating* w,                     # IN/OUT (d,) weights
        double* b,                       # IN/OUT intercept
        floating* q,                     # IN/OUT (d,) L1 penalty received per weight
        Py_ssize_t* order,               # IN/OUT (n,) visiting order
        double* state,                   # IN/OUT (N_STATE,) see the enum above
        int n_epochs, int penalty, double alpha, double l1_ratio, double eta,
        bint fit_intercept, double tol, int n_iter_no_change,
        bint shuffle, uint64_t seed, double pos_weight, double neg_weight,
        bint early_stopping, double intercept_decay) noexcept nogil:
    """Run up to n_epochs epochs of one binary problem; stops early when the
    stopping rule fires (state[S_DONE]) or weights stop being finite.

    For CSR X (indptr != NULL) the products, updates, tracked norms and the L1
    truncation run over the row's stored entries only, and every intercept update is
    scaled by intercept_decay (scikit-learn: 0.01 for sparse X, 1.0 for dense X).
    """
    cdef Py_ssize_t i, r, j, jj, epoch, nnz = d
    cdef const Py_ssize_t* xi = NULL
    cdef double p, yi, update, sumloss, objective, score, loss, acc2, acc1
    cdef double decay = max(0.0, 1.0 - (1.0 - l1_ratio) * eta * alpha)
    cdef bint track_objective = not early_stopping
    cdef const floating* x

    if state[S_NORMS_SET] == 0.0:
        state[S_SQ] = sqnorm(w, d)
        state[S_L1] = l1norm(w, d)
        state[S_NORMS_SET] = 1.0
    for epoch in range(n_epochs):
        if state[S_DONE] != 0.0:
            return
        sumloss = 0.0
        objective = 0.0
        if shuffle:
            shuffle_rows(order, n, seed)
        for r in range(n):
            i = order[r]
            if val_mask[i]:
                continue   # never learn on the validation rows
            yi = y[i]
            if indptr == NULL:
                x = &X[i * d]
                p = dot(x, w, d) + b[0]
            else:
                x = &X[indptr[i]]
                xi = &ind[indptr[i]]
                nnz = indptr[i + 1] - indptr[i]
                p = dot_sparse(x, xi, nnz, w) + b[0]
            if track_objective:
                loss = -yi * p if yi * p <= 0.0 else 0.0
                sumloss += loss
                objective += loss
                if penalty != NO_PENALTY:
                    # scikit-learn optimises 0.5 * |w|^2 for the L2 part
                    objective += alpha * ((1.0 - l1_ratio) * 0.5 * state[S_SQ]
                                          + l1_ratio * state[S_L1])
            # perceptron loss gradient: -y when y p <= 0 (a zero margin counts as a mistake)
            update = eta * yi if yi * p <= 0.0 else 0.0
            update *= (pos_weight if yi > 0.0 else neg_weight) * sw[i]
            if penalty >= L2:
                # weight decay; never flips signs when eta * alpha is large
                for j in range(d):
                    w[j] *= decay
                state[S_SQ] *= decay * decay
                state[S_L1] *= decay
            if update != 0.0:
                acc2 = 0.0
                acc1 = 0.0
                if indptr == NULL:
                    for j in range(d):
                        w[j] += update * x[j]
                        acc2 += w[j] * w[j]
                        acc1 += fabs(w[j])
                else:
                    # as scikit-learn's WeightVector.add: the norms are re-summed
                    # over the row's stored entries only
                    for jj in range(nnz):
                        j = xi[jj]
                        w[j] += update * x[jj]
                        acc2 += w[j] * w[j]
                        acc1 += fabs(w[j])
                state[S_SQ] = acc2
                state[S_L1] = acc1
            if fit_intercept:
                if indptr == NULL:
                    b[0] += update
                elif update != 0.0:
                    b[0] += update * intercept_decay
            if penalty == L1 or penalty == ELASTICNET:
                state[S_U] += l1_ratio * eta * alpha
                if indptr == NULL:
                    l1_truncate(w, q, d, state[S_U])
                else:
                    l1_truncate_sparse(w, q, xi, nnz, state[S_U])
            state[S_T] += 1.0

        state[S_EPOCHS] += 1.0
        state[S_SUMLOSS] = sumloss
        state[S_OBJECTIVE] = objective
        if not isfinite(b[0]) or not all_finite(w, d):
            state[S_NONFINITE] = 1.0
            state[S_DONE] = 1.0
            return
        if early_stopping:
            score = validation_accuracy(X, ind, indptr, n, d, y, sw, val_mask, w, b[0])
            state[S_SCORE] = score
            if tol > -INFINITY and score < state[S_BEST] + tol:
                state[S_NO_IMPROVE] += 1.0
            else:
                state[S_NO_IMPROVE] = 0.0
            if score > state[S_BEST]:
                state[S_BEST] = score
        else:
            objective = objective / n_train
            if tol > -INFINITY and objective > state[S_BEST] - tol:
                state[S_NO_IMPROVE] += 1.0
            else:
                state[S_NO_IMPROVE] = 0.0
            if objective < state[S_BEST]:
                state[S_BEST] = objective
        if state[S_NO_IMPROVE] >= n_iter_no_change:
            state[S_DONE] = 1.0
            return


def new_state(Py_ssize_t n_problems, double t, bint early_stopping):
    """A fresh (n_problems, N_STATE) state array for ``fit_ovr``."""
    import numpy as np
    state = np.zeros((n_problems, N_STATE), dtype=np.float64)
    state[:, S_T] = t
    state[:, S_BEST] = -np.inf if early_stopping else np.inf
    return state


def _shapes(*arrays):
    return tuple(tuple(a.shape[:a.ndim]) for a in arrays)


STATE_FIELDS = {"t": S_T, "best": S_BEST, "epochs": S_EPOCHS, "done": S_DONE,
                "sumloss": S_SUMLOSS, "objective": S_OBJECTIVE, "score": S_SCORE,
                "nonfinite": S_NONFINITE}


cdef int check_problems(Py_ssize_t k, Py_ssize_t n, Py_ssize_t d, tuple shapes,
                        Py_ssize_t[:, ::1] order) except -1:
    """The shapes fit_ovr's arrays must have for k problems over n rows of d features
    (shapes: their actual shapes, in fit_ovr's order from Y), and every visiting order
    made of row indices: a wrong one would be read or written out of bounds."""
    cdef Py_ssize_t c, i
    wanted = ((k, n), (n,), (n,), (k, d), (k,), (k, d), (k, n), (k, N_STATE), (k,), (k,),
              (k,))
    if shapes != wanted:
        raise ValueError(f"array shapes {shapes} do not fit {k} problems over {n} rows of "
                         f"{d} features: want {wanted}")
    for c in range(k):
        for i in range(n):
            if order[c, i] < 0 or order[c, i] >= n:
                raise ValueError(f"order[{c}, {i}] = {order[c, i]} is not a row index")
    return 0


cdef Py_ssize_t training_rows(const unsigned char[::1] val_mask) except -1:
    """The rows outside the validation split; at least one, or ValueError."""
    cdef Py_ssize_t i, n_train = 0
    for i in range(val_mask.shape[0]):
        if not val_mask[i]:
            n_train += 1
    if n_train == 0:
        raise ValueError("no training rows left after the validation split")
    return n_train


def fit_ovr(const floating[:, ::1] X not None,           # IN (n, d)
            const floating[:, ::1] Y not None,           # IN (k, n) +1 / -1 per problem
            const floating[::1] sw not None,             # IN (n,) sample weights
            const unsigned char[::1] val_mask not None,  # IN (n,)
            floating[:, ::1] W not None,                 # IN/OUT (k, d)
            double[::1] B not None,                      # IN/OUT (k,)
            floating[:, ::1] Q not None,                 # IN/OUT (k, d) L1 bookkeeping
            Py_ssize_t[:, ::1] order not None,           # IN/OUT (k, n) visiting orders
            double[:, ::1] state not None,               # IN/OUT (k, N_STATE)
            const uint64_t[::1] seeds not None,          # IN (k,) one shuffle stream per problem
            const double[::1] pos_weight not None,       # IN (k,)
            const double[::1] neg_weight not None,       # IN (k,)
            int n_epochs, int penalty, double alpha, double l1_ratio, double eta,
            bint fit_intercept, double tol, int n_iter_no_change, bint shuffle,
            bint early_stopping, int n_threads):
    """Train k independent binary perceptrons (one-vs-rest) for up to n_epochs.

    Problems run in parallel over k; each writes only its own row of W, B, Q,
    order and state, so results do not depend on n_threads.
    """
    cdef Py_ssize_t k = W.shape[0], n = X.shape[0], d = X.shape[1], c, i
    cdef Py_ssize_t n_train = 0
    cdef int threads = n_threads if (k > 1 and n_threads > 1 and n * d * k >= 20000) else 1
    check_problems(k, n, d, _shapes(Y, sw, val_mask, W, B, Q, order, state, seeds,
                                    pos_weight, neg_weight), order)
    if threads > k:
        threads = <int>k
    n_train = training_rows(val_mask)
    with nogil:
        for c in prange(k, schedule="dynamic", num_threads=threads):
            perceptron_epochs(&X[0, 0], NULL, NULL, n, d, &Y[c, 0], &sw[0], &val_mask[0], n_train,
                              &W[c, 0], &B[c], &Q[c, 0], &order[c, 0], &state[c, 0],
                              n_epochs, penalty, alpha, l1_ratio, eta, fit_intercept,
                              tol, n_iter_no_change, shuffle, seeds[c],
                              pos_weight[c], neg_weight[c], early_stopping, 1.0)


def fit_ovr_sparse(const floating[::1] data not None,         # IN (nnz,) CSR values
                   const Py_ssize_t[::1] indices not None,    # IN (nnz,) CSR column indices
                   const Py_ssize_t[::1] indptr not None,     # IN (n + 1,) CSR row pointers
                   Py_ssize_t n_features,
                   const floating[:, ::1] Y not None,
                   const floating[::1] sw not None,
                   const unsigned char[::1] val_mask not None,
                   floating[:, ::1] W not None,
                   double[::1] B not None,
                   floating[:, ::1] Q not None,
                   Py_ssize_t[:, ::1] order not None,
                   double[:, ::1] state not None,
                   const uint64_t[::1] seeds not None,
                   const double[::1] pos_weight not None,
                   const double[::1] neg_weight not None,
                   int n_epochs, int penalty, double alpha, double l1_ratio, double eta,
                   bint fit_intercept, double tol, int n_iter_no_change, bint shuffle,
                   bint early_stopping, int n_threads, double intercept_decay=0.01):
    """``fit_ovr`` for X in CSR form (data, indices, indptr) with n_features columns:
    scikit-learn's sparse path (updates over the stored entries, intercept updates
    scaled by intercept_decay). Indices must lie in [0, n_features) (checked)."""
    cdef Py_ssize_t k = W.shape[0], n = indptr.shape[0] - 1, d = n_features, c, i
    cdef Py_ssize_t n_train = 0, nnz = data.shape[0]
    cdef int threads = n_threads if (k > 1 and n_threads > 1 and nnz * k >= 20000) else 1
    cdef const floating* data_ptr = NULL
    cdef const Py_ssize_t* ind_ptr = NULL
    check_problems(k, n, d, _shapes(Y, sw, val_mask, W, B, Q, order, state, seeds,
                                    pos_weight, neg_weight), order)
    if indices.shape[0] != nnz:
        raise ValueError(f"{indices.shape[0]} column indices for {nnz} values")
    if indptr[0] != 0 or indptr[n] != nnz:
        raise ValueError("indptr does not match data")
    for i in range(n):
        if indptr[i + 1] < indptr[i]:
            raise ValueError("indptr must be non-decreasing")
    for i in range(nnz):
        if indices[i] < 0 or indices[i] >= d:
            raise ValueError("column index out of range")
    if threads > k:
        threads = <int>k
    n_train = training_rows(val_mask)
    if nnz > 0:
        data_ptr = &data[0]
        ind_ptr = &indices[0]
    with nogil:
        for c in prange(k, schedule="dynamic", num_threads=threads):
            perceptron_epochs(data_ptr, ind_ptr, &indptr[0], n, d, &Y[c, 0], &sw[0],
                              &val_mask[0], n_train,
                              &W[c, 0], &B[c], &Q[c, 0], &order[c, 0], &state[c, 0],
                              n_epochs, penalty, alpha, l1_ratio, eta, fit_intercept,
                              tol, n_iter_no_change, shuffle, seeds[c],
                              pos_weight[c], neg_weight[c], early_stopping,
                              intercept_decay)
