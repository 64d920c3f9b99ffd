/* Worker threads that share a loop of independent chunks with the calling thread: the
 * optimizer step, which runs between matrix products while OpenBLAS's threads idle, and
 * the parts of a product split between threads while BLAS runs on one.
 *
 * fastnn_pool_for(fn, arg, n, chunk, n_threads) calls fn(arg, lo, hi) once for every
 * chunk [lo, hi) of [0, n), on the caller and on up to n_threads - 1 workers, and
 * returns when all are done. The caller starts on the first chunk at once; a worker takes
 * the next unclaimed chunk when it arrives. Each chunk runs exactly once, so when fn
 * writes only its own elements the result does not depend on who ran which chunk.
 *
 * Why not OpenMP: scipy's OpenBLAS keeps its worker spinning for about 0.1 s after each
 * matrix product, and an OpenMP worker spins without yielding after each parallel region;
 * on 2 cores the two starved each other (epochs 7-25x slower). These workers sleep
 * between loops on a condition variable.
 *
 * Why chunks claimed from a shared counter, not fixed halves: a sleeping worker starts
 * 25-50 us after it is woken on this kind of machine. With halves, the caller waited for
 * the late half every step.
 *
 * Why workers are kept off the caller's CPU: the scheduler placed a woken worker on the
 * caller's CPU (the other one being busy with OpenBLAS's spinning worker), where it
 * preempted the caller, and the two halves ran one after the other. A worker's affinity
 * is therefore the caller's minus the CPU the caller runs on; a caller allowed a single
 * CPU runs every chunk itself.
 *
 * Why a loop may ask its workers to linger: a matrix product split between the threads
 * (gemm_threads in fastnn/_kernels/blas.pxd) takes some tens of microseconds, so a
 * worker woken late would arrive when the caller has done both halves. After such a
 * loop the workers poll for the next one for up to FASTNN_POOL_LINGER_NS before they
 * sleep. Those loops run only while scipy's BLAS is on one thread, so none of its
 * workers is kept from the CPU; the poll yields the CPU every FASTNN_POOL_LINGER_YIELD
 * polls all the same.
 *
 * Why a step may run its lingering loops alone: on these 2-core machines, in stretches
 * of some seconds, a step whose parts the worker shared took twice as long as the same
 * step on the caller alone, and otherwise it gained little. MLPClassifier on digits, 200
 * epochs a fit, 290 fits each way, alternating: with the worker a median of 0.678 ms
 * per epoch, 24 fits above 1.1 ms (up to 1.71); the caller alone (the same parts, one
 * after the other) 0.638 ms, none above 0.86. So a caller that repeats one step (the
 * training step's batches) times it both ways and runs the faster
 * (fastnn_pool_tuning_start/stop, below): 0.643 ms, none above 0.86. Which thread runs a
 * chunk never changes a result, so neither does this. The way is one flag for the
 * process: two callers training at once may choose each other's way (speed only).
 *
 * One caller at a time uses the workers; a second caller meanwhile (another Python
 * thread) runs every chunk itself. After fork() the child starts with no workers. */
#ifndef FASTNN_POOL_H
#define FASTNN_POOL_H

typedef void (*fastnn_chunk_fn)(void *arg, long lo, long hi);

/* 1 while the lingering loops are to run on the caller alone (atomic) */
static int fastnn_pool_solo = 0;
/* -1: the tuning below decides; 0 or 1: every step runs with (0) or without (1) the
 * workers (for tests and measurements) */
static int fastnn_pool_solo_forced = -1;

static void fastnn_serial_for(fastnn_chunk_fn fn, void *arg, long n, long chunk) {
    long lo;
    for (lo = 0; lo < n; lo += chunk)
        fn(arg, lo, lo + chunk < n ? lo + chunk : n);
}

/* A flag that chunks running at once may raise; the caller reads it after the loop,
 * which waits for every chunk. */
static void fastnn_pool_flag_raise(int *flag) {
#ifdef __GNUC__
    __atomic_store_n(flag, 1, __ATOMIC_RELAXED);
#else
    *flag = 1;                 /* the loop runs on the caller alone (below) */
#endif
}

#if !defined(__linux__) || !defined(__GNUC__)

static void fastnn_pool_for_linger(fastnn_chunk_fn fn, void *arg, long n, long chunk,
                                   int n_threads, int linger) {
    (void)n_threads;
    (void)linger;
    fastnn_serial_for(fn, arg, n, chunk);
}

static void fastnn_pool_for_brief(fastnn_chunk_fn fn, void *arg, long n, long chunk,
                                  int n_threads) {
    (void)n_threads;
    fastnn_serial_for(fn, arg, n, chunk);
}

/* for the tests: which thread runs, and a pause */
static unsigned long fastnn_pool_thread_id(void) { return 0; }
static void fastnn_pool_pause_us(unsigned int us) { (void)us; }

#else

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define FASTNN_POOL_MAX_WORKERS 63
/* how long the caller polls for a worker's last chunk before it sleeps (iterations of
 * about 10-40 ns): a chunk is some microseconds, and a sleeping caller wakes late */
#define FASTNN_POOL_POLLS 100000
/* how long a worker polls for the next loop after a lingering one, and how often it
 * yields the CPU meanwhile (polls of about 10-40 ns) */
#define FASTNN_POOL_LINGER_NS 300000L
#define FASTNN_POOL_LINGER_YIELD 256

static struct {
    pthread_mutex_t busy;      /* held by the caller whose loop the workers may join */
    pthread_mutex_t lock;      /* guards the fields below, except `next` and `inside` */
    pthread_cond_t wake;       /* workers wait here for a new generation */
    pthread_cond_t left;       /* the caller waits here for inside == 0 */
    unsigned long generation;  /* bumped once per loop (atomic: lingering workers poll it) */
    int open;                  /* the current loop still takes workers */
    int seats;                 /* how many more workers it takes */
    int inside;                /* workers running the current loop (atomic) */
    int linger;                /* the current loop asks its workers to linger after it */
    int sleeping;              /* workers waiting on `wake` */
    long next;                 /* the next unclaimed chunk (atomic) */
    fastnn_chunk_fn fn;
    void *arg;
    long n, chunk;
    int n_workers;             /* started so far (they never exit) */
    int steered;               /* the workers' affinity is steered_mask */
    cpu_set_t steered_mask;
    int atfork_set;
    pthread_t threads[FASTNN_POOL_MAX_WORKERS];
} fastnn_pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
                 .wake = PTHREAD_COND_INITIALIZER, .left = PTHREAD_COND_INITIALIZER,
                 .steered = 0};

/* Claim and run chunks until none is left. */
static void fastnn_pool_claim(fastnn_chunk_fn fn, void *arg, long n, long chunk) {
    for (;;) {
        long lo = __atomic_fetch_add(&fastnn_pool.next, 1, __ATOMIC_RELAXED) * chunk;
        if (lo >= n)
            return;
        fn(arg, lo, lo + chunk < n ? lo + chunk : n);
    }
}

static long fastnn_pool_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Poll for a generation after `seen` for up to FASTNN_POOL_LINGER_NS (lock not held). */
static void fastnn_pool_linger(unsigned long seen) {
    long polls, until = fastnn_pool_now_ns() + FASTNN_POOL_LINGER_NS;
    for (polls = 1;; polls++) {
        if (__atomic_load_n(&fastnn_pool.generation, __ATOMIC_RELAXED) != seen)
            return;
        if (polls % FASTNN_POOL_LINGER_YIELD == 0) {
            if (fastnn_pool_now_ns() > until)
                return;
            sched_yield();
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

/* born: the generation when the worker was started; its first loop is the next one */
static void *fastnn_pool_worker(void *born) {
    unsigned long seen = (unsigned long)born;
    int linger = 0;
    pthread_mutex_lock(&fastnn_pool.lock);
    for (;;) {
        fastnn_chunk_fn fn;
        void *arg;
        long n, chunk;
        if (linger && fastnn_pool.generation == seen) {
            pthread_mutex_unlock(&fastnn_pool.lock);
            fastnn_pool_linger(seen);
            pthread_mutex_lock(&fastnn_pool.lock);
        }
        while (fastnn_pool.generation == seen) {
            fastnn_pool.sleeping++;
            pthread_cond_wait(&fastnn_pool.wake, &fastnn_pool.lock);
            fastnn_pool.sleeping--;
        }
        seen = fastnn_pool.generation;
        linger = fastnn_pool.linger;    /* a worker too late for the loop lingers too */
        if (!fastnn_pool.open || fastnn_pool.seats == 0)
            continue;                   /* the caller has finished, or has enough help */
        fastnn_pool.seats--;
        __atomic_add_fetch(&fastnn_pool.inside, 1, __ATOMIC_RELAXED);
        fn = fastnn_pool.fn;
        arg = fastnn_pool.arg;
        n = fastnn_pool.n;
        chunk = fastnn_pool.chunk;
        pthread_mutex_unlock(&fastnn_pool.lock);
        fastnn_pool_claim(fn, arg, n, chunk);
        pthread_mutex_lock(&fastnn_pool.lock);
        /* release: the caller that sees inside == 0 sees this worker's writes */
        if (__atomic_sub_fetch(&fastnn_pool.inside, 1, __ATOMIC_RELEASE) == 0)
            pthread_cond_signal(&fastnn_pool.left);
    }
    return NULL;
}

/* In the child of a fork, the workers do not exist and the locks may be held. */
static void fastnn_pool_after_fork_child(void) {
    pthread_mutex_t unlocked = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh = PTHREAD_COND_INITIALIZER;
    fastnn_pool.busy = unlocked;
    fastnn_pool.lock = unlocked;
    fastnn_pool.wake = fresh;
    fastnn_pool.left = fresh;
    fastnn_pool.open = 0;
    fastnn_pool.inside = 0;
    fastnn_pool.sleeping = 0;
    fastnn_pool.n_workers = 0;
    fastnn_pool.steered = 0;
}

/* Start workers until there are `wanted` (lock held); returns how many there are. */
static int fastnn_pool_grow(int wanted) {
    if (wanted > FASTNN_POOL_MAX_WORKERS)
        wanted = FASTNN_POOL_MAX_WORKERS;
    if (!fastnn_pool.atfork_set) {
        pthread_atfork(NULL, NULL, fastnn_pool_after_fork_child);
        fastnn_pool.atfork_set = 1;
    }
    while (fastnn_pool.n_workers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        int failed;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        failed = pthread_create(&thread, &attr, fastnn_pool_worker,
                                (void *)fastnn_pool.generation);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        fastnn_pool.threads[fastnn_pool.n_workers++] = thread;
        fastnn_pool.steered = 0;        /* the new worker is not steered yet */
    }
    return fastnn_pool.n_workers;
}

/* Keep the workers off the caller's CPU (lock held); 0 when the caller may use one CPU
 * only. The caller's affinity is read on every loop (a system call of about a
 * microsecond), so a thread that narrows its own affinity is obeyed at once; the
 * workers' affinity changes only when the mask it gives differs from the last. */
static int fastnn_pool_steer(void) {
    cpu_set_t mask;
    int w, cpu = sched_getcpu();
    if (cpu < 0 || pthread_getaffinity_np(pthread_self(), sizeof(mask), &mask) != 0)
        return 1;                       /* unknown: leave placement to the scheduler */
    CPU_CLR(cpu, &mask);
    if (CPU_COUNT(&mask) == 0)
        return 0;
    if (fastnn_pool.steered && CPU_EQUAL(&mask, &fastnn_pool.steered_mask))
        return 1;
    for (w = 0; w < fastnn_pool.n_workers; w++)
        pthread_setaffinity_np(fastnn_pool.threads[w], sizeof(mask), &mask);
    fastnn_pool.steered_mask = mask;
    fastnn_pool.steered = 1;
    return 1;
}

static void fastnn_pool_for_linger(fastnn_chunk_fn fn, void *arg, long n, long chunk,
                                   int n_threads, int linger) {
    long polls;
    int w;
    if (n_threads < 2 || n <= chunk || (linger && __atomic_load_n(&fastnn_pool_solo,
                                                                 __ATOMIC_RELAXED)) ||
            pthread_mutex_trylock(&fastnn_pool.busy) != 0) {
        fastnn_serial_for(fn, arg, n, chunk);
        return;
    }
    pthread_mutex_lock(&fastnn_pool.lock);
    if (fastnn_pool_grow(n_threads - 1) < 1 || !fastnn_pool_steer()) {
        pthread_mutex_unlock(&fastnn_pool.lock);
        pthread_mutex_unlock(&fastnn_pool.busy);
        fastnn_serial_for(fn, arg, n, chunk);
        return;
    }
    fastnn_pool.fn = fn;
    fastnn_pool.arg = arg;
    fastnn_pool.n = n;
    fastnn_pool.chunk = chunk;
    fastnn_pool.next = 0;
    fastnn_pool.open = 1;
    fastnn_pool.seats = n_threads - 1;
    fastnn_pool.linger = linger;
    __atomic_store_n(&fastnn_pool.generation, fastnn_pool.generation + 1, __ATOMIC_RELAXED);
    /* a worker not waiting (running, or lingering) sees the generation */
    for (w = 0; w < n_threads - 1 && w < fastnn_pool.sleeping; w++)
        pthread_cond_signal(&fastnn_pool.wake);
    pthread_mutex_unlock(&fastnn_pool.lock);

    fastnn_pool_claim(fn, arg, n, chunk);

    /* Every chunk is claimed. Close the loop to late workers, then wait for those inside
     * to finish their last chunk. */
    pthread_mutex_lock(&fastnn_pool.lock);
    fastnn_pool.open = 0;
    pthread_mutex_unlock(&fastnn_pool.lock);
    for (polls = 0; polls < FASTNN_POOL_POLLS; polls++) {
        if (__atomic_load_n(&fastnn_pool.inside, __ATOMIC_ACQUIRE) == 0)
            break;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (polls == FASTNN_POOL_POLLS) {
        pthread_mutex_lock(&fastnn_pool.lock);
        while (__atomic_load_n(&fastnn_pool.inside, __ATOMIC_ACQUIRE) > 0)
            pthread_cond_wait(&fastnn_pool.left, &fastnn_pool.lock);
        pthread_mutex_unlock(&fastnn_pool.lock);
    }
    pthread_mutex_unlock(&fastnn_pool.busy);
}

/* When the last brief loop ended (CLOCK_MONOTONIC ns, atomic). */
static long fastnn_pool_brief_end = 0;

/* A lingering loop too short to wait for a sleeping worker (the parts of a product of a
 * few rows, some microseconds): the workers take part when the last such loop ended less
 * than FASTNN_POOL_LINGER_NS ago, so that they are still lingering after it (or are woken
 * now, for the next ones), and otherwise the caller runs every chunk. Waking a sleeping
 * worker cost the caller about 10 us, and the worker came after the chunks were done:
 * one-row predicts 0.5 ms apart took 32 us with the wake-up against 21 us without. */
static void fastnn_pool_for_brief(fastnn_chunk_fn fn, void *arg, long n, long chunk,
                                  int n_threads) {
    long start = fastnn_pool_now_ns();
    long last = __atomic_load_n(&fastnn_pool_brief_end, __ATOMIC_RELAXED);
    if (start - last < FASTNN_POOL_LINGER_NS)
        fastnn_pool_for_linger(fn, arg, n, chunk, n_threads, 1);
    else
        fastnn_serial_for(fn, arg, n, chunk);
    __atomic_store_n(&fastnn_pool_brief_end, fastnn_pool_now_ns(), __ATOMIC_RELAXED);
}

/* for the tests: which thread runs, and a pause */
static unsigned long fastnn_pool_thread_id(void) { return (unsigned long)pthread_self(); }

static void fastnn_pool_pause_us(unsigned int us) {
    struct timespec t;
    t.tv_sec = us / 1000000;
    t.tv_nsec = (long)(us % 1000000) * 1000;
    nanosleep(&t, NULL);
}

#endif

static void fastnn_pool_for(fastnn_chunk_fn fn, void *arg, long n, long chunk,
                            int n_threads) {
    fastnn_pool_for_linger(fn, arg, n, chunk, n_threads, 0);
}

/* ---- with or without the workers: timing a repeated step --------------------------
 * The caller keeps FASTNN_POOL_TUNING doubles, zeros at first: the mean time per unit
 * of work (a batch's rows) of its steps with the workers and without (0 until
 * measured), the steps so far, and the current step's way. Each step runs the faster
 * way; every FASTNN_POOL_EXPLORE-th step the other, to follow the machine (less often
 * while one way is clearly ahead). */
#define FASTNN_POOL_TUNING 4
#define FASTNN_POOL_EXPLORE 32
#define FASTNN_POOL_EXPLORE_CLEAR 128
/* the weight of a new time in the running mean */
#define FASTNN_POOL_TUNING_WEIGHT 0.125

static long fastnn_pool_clock_ns(void) {
#if defined(__linux__) && defined(__GNUC__)
    return fastnn_pool_now_ns();
#else
    return 0;
#endif
}

/* Before a step: choose its way and return the time to give fastnn_pool_tuning_stop. */
static long fastnn_pool_tuning_start(double *tuning) {
    int solo, faster;
    long period, step = (long)tuning[2];
    if (fastnn_pool_solo_forced >= 0) {
        solo = fastnn_pool_solo_forced;
    } else if (tuning[0] <= 0) {
        solo = 0;
    } else if (tuning[1] <= 0) {
        solo = 1;
    } else {
        faster = tuning[1] < tuning[0];        /* 1: alone is faster */
        period = (tuning[0] > 1.2 * tuning[1] || tuning[1] > 1.2 * tuning[0])
                 ? FASTNN_POOL_EXPLORE_CLEAR : FASTNN_POOL_EXPLORE;
        solo = step % period == period - 1 ? !faster : faster;
    }
    tuning[3] = solo;
    __atomic_store_n(&fastnn_pool_solo, solo, __ATOMIC_RELAXED);
    return fastnn_pool_clock_ns();
}

/* After the step begun at `start`, which did `units` of work; units <= 0 for a step cut
 * short, which is not timed. */
static void fastnn_pool_tuning_stop(double *tuning, long start, double units) {
    int solo = tuning[3] != 0;
    double t = (double)(fastnn_pool_clock_ns() - start) / (units > 0 ? units : 1);
    __atomic_store_n(&fastnn_pool_solo, 0, __ATOMIC_RELAXED);
    if (units <= 0)
        return;
    if (tuning[solo] <= 0)
        tuning[solo] = t > 0 ? t : 1e-9;
    else
        tuning[solo] += (t - tuning[solo]) * FASTNN_POOL_TUNING_WEIGHT;
    tuning[2] += 1;
}

#endif
