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


cdef void l1_truncate(floating* w, floating* q, Py_ssize_t d, double u) noexcept nogil:
    """Clip each weight towards zero by the L1 penalty not yet applied to it
    (u is the total so far, q[j] what weight j has received), never across zero."""
    cdef Py_ssize_t j
    cdef double z
    for j in range(d):
        z = w[j]
        if z > 0.0:
            w[j] = max(0.0, z - (u + q[j]))
        elif z < 0.0:
            w[j] = min(0.0, z + (u - q[j]))
        q[j] += w[j] - z


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


cdef double validation_accuracy(const floating* X, Py_ssize_t n, Py_ssize_t d,
                                const floating* y, const floating* sw,
                                const unsigned char* val_mask,
                                const floating* w, double b) noexcept nogil:
    """Weighted accuracy of sign(w.x + b) (0 counts as -1) on the validation rows."""
    cdef Py_ssize_t i
    cdef double hit = 0.0, total = 0.0, p, label
    for i in range(n):
        if not val_mask[i]:
            continue
        p = dot(&X[i * d], w, d) + b
        label = 1.0 if p > 0.0 else -1.0
        total += sw[i]
        if label == y[i]:
            hit += sw[i]
    return hit / total if total > 0.0 else 0.0


cdef void perceptron_epochs(
        const floating* X,               # IN (n, d) C-order
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
        bint early_stopping) noexcept nogil:
    """Run up to n_epochs epochs of one binary problem; stops early when the
    stopping rule fires (state[S_DONE]) or weights stop being finite."""
    cdef Py_ssize_t i, r, j, epoch
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
            x = &X[i * d]
            yi = y[i]
            p = dot(x, w, d) + b[0]
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
                for j in range(d):
                    w[j] += update * x[j]
                    acc2 += w[j] * w[j]
                    acc1 += fabs(w[j])
                state[S_SQ] = acc2
                state[S_L1] = acc1
            if fit_intercept:
                b[0] += update
            if penalty == L1 or penalty == ELASTICNET:
                state[S_U] += l1_ratio * eta * alpha
                l1_truncate(w, q, d, state[S_U])
            state[S_T] += 1.0

        state[S_EPOCHS] += 1.0
        state[S_SUMLOSS] = sumloss
        state[S_OBJECTIVE] = objective
        if not isfinite(b[0]) or not all_finite(w, d):
            state[S_NONFINITE] = 1.0
            state[S_DONE] = 1.0
            return
        if early_stopping:
            score = validation_accuracy(X, n, d, y, sw, val_mask, w, b[0])
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


STATE_FIELDS = {"t": S_T, "best": S_BEST, "epochs": S_EPOCHS, "done": S_DONE,
                "sumloss": S_SUMLOSS, "objective": S_OBJECTIVE, "score": S_SCORE,
                "nonfinite": S_NONFINITE}


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
    if threads > k:
        threads = <int>k
    for i in range(n):
        if not val_mask[i]:
            n_train += 1
    if n_train == 0:
        raise ValueError("no training rows left after the validation split")
    with nogil:
        for c in prange(k, schedule="dynamic", num_threads=threads):
            perceptron_epochs(&X[0, 0], n, d, &Y[c, 0], &sw[0], &val_mask[0], n_train,
                              &W[c, 0], &B[c], &Q[c, 0], &order[c, 0], &state[c, 0],
                              n_epochs, penalty, alpha, l1_ratio, eta, fit_intercept,
                              tol, n_iter_no_change, shuffle, seeds[c],
                              pos_weight[c], neg_weight[c], early_stopping)
