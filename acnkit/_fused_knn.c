/* Exact K-nearest-neighbour candidates without a B x N distance matrix (AVX-512).
 *
 * For a block of QB = 8 queries and 32 store rows at a time, the scores
 * s_j = |c_j|^2 - 2 q.c_j are accumulated in 16 vector registers over the code dimensions
 * (the store is kept transposed, d x ld, so that 16 consecutive rows are one load) and
 * compared at once with each query's current K-th best score; only the rare
 * lanes that beat it are looked at one by one. No score is written to memory, so the
 * arithmetic, not the memory traffic, sets the pace: on a 128 x 60 000 x 20 search this
 * one thread is faster than the chunked torch kernel on two (docs/performance.md).
 *
 * Built as an optional extension with -march=native; without AVX-512 it reports itself
 * unavailable and acnkit uses its torch kernel, as it does if the kernel cannot allocate
 * its small buffers (it then returns row -2).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Built with AVX-512 and running on a CPU that has it: an extension built on one machine
 * can be imported on another (a shared home folder), where its instructions would fault. */
int acnkit_fused_available(void) {
#ifdef __AVX512F__
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#ifdef __AVX512F__
#include <immintrin.h>

#ifndef QB
#define QB 8 /* queries per block */
#endif
#ifndef RV
#define RV 2 /* row vectors of 16 per block: QB x RV = 16 accumulators of the 32 registers */
#endif
#define RB (16 * RV) /* rows per block; the transposed store is padded to a multiple of 64 */
#if 64 % RB != 0
#error "RB must divide the store's padding of 64 rows"
#endif
#define CHUNK_ROWS 2048 /* 2048 rows x d floats: 160 KiB at d = 20, within L2 */

/* Insert (score, row) into the ascending list best[0..kk) if it beats the last entry. */
static inline void insert(float *bs, int64_t *bi, int64_t kk, float s, int64_t row) {
    if (!(s < bs[kk - 1])) return;
    int64_t p = kk - 1;
    while (p > 0 && bs[p - 1] > s) {
        bs[p] = bs[p - 1];
        bi[p] = bi[p - 1];
        p--;
    }
    bs[p] = s;
    bi[p] = row;
}

static inline int skipped(int64_t row, const int64_t *ex, int64_t n_ex, const uint8_t *banned) {
    if (banned && banned[row]) return 1;
    for (int64_t e = 0; e < n_ex; e++)
        if (ex[e] == row) return 1;
    return 0;
}

/* The lanes of v (rows j .. j + 15) that beat the query's K-th best, one by one. */
static inline void harvest(__m512 v, int64_t j, int64_t n, float *bs, int64_t *bi, int64_t kk,
                           const int64_t *ex, int64_t n_ex, const uint8_t *banned) {
    __mmask16 m = _mm512_cmp_ps_mask(v, _mm512_set1_ps(bs[kk - 1]), _CMP_LT_OQ);
    if (!m) return;
    float s[16];
    _mm512_storeu_ps(s, v);
    while (m) {
        int l = __builtin_ctz(m);
        m &= m - 1;
        int64_t row = j + l;
        if (row >= n || !(s[l] < bs[kk - 1]) || skipped(row, ex, n_ex, banned)) continue;
        insert(bs, bi, kk, s[l], row);
    }
}
#endif

#ifdef __AVX512F__
/* Query blocks [blk0, blk1) against every row, chunk by chunk. */
static void run_blocks(const float *ct, const float *norms, int64_t n, int64_t ld, int64_t d,
                       int64_t q0, int64_t q1, int64_t kk, const int64_t *excl,
                       int64_t n_excl, const uint8_t *banned, float *out_s, int64_t *out_i,
                       const float *wt, int64_t blk0, int64_t blk1, float *pad_s,
                       int64_t *pad_i) {
    /* Rows outermost, in chunks that stay in the core's cache while every query block
     * passes over them: a large store is read from memory once per batch, not once per
     * block of queries. */
    for (int64_t j0 = 0; j0 < ld; j0 += CHUNK_ROWS) {
        int64_t j1 = j0 + CHUNK_ROWS < ld ? j0 + CHUNK_ROWS : ld;
        for (int64_t blk = blk0; blk < blk1; blk++) {
            int64_t i0 = q0 + blk * QB;
            const float *w0 = wt + blk * d * QB;
            float *bs[QB];
            int64_t *bi[QB];
            const int64_t *ex[QB];
            for (int64_t i = 0; i < QB; i++) {
                int real = i0 + i < q1;
                bs[i] = real ? out_s + (i0 + i) * kk : pad_s + i * kk;
                bi[i] = real ? out_i + (i0 + i) * kk : pad_i + i * kk;
                ex[i] = real && excl ? excl + (i0 + i) * n_excl : NULL;
            }
            for (int64_t j = j0; j < j1; j += RB) {
                const float *cp = ct + j;
                __m512 acc[QB][RV];
                for (int r = 0; r < RV; r++) {
                    __m512 nr = _mm512_loadu_ps(norms + j + 16 * r);
                    for (int i = 0; i < QB; i++) acc[i][r] = nr;
                }
                for (int64_t t = 0; t < d; t++) {
                    __m512 x[RV];
                    for (int r = 0; r < RV; r++) x[r] = _mm512_loadu_ps(cp + t * ld + 16 * r);
                    const float *w = w0 + t * QB;
                    for (int i = 0; i < QB; i++) {
                        __m512 wi = _mm512_set1_ps(w[i]);
                        for (int r = 0; r < RV; r++) acc[i][r] = _mm512_fmadd_ps(wi, x[r], acc[i][r]);
                    }
                }
                for (int i = 0; i < QB; i++) {
                    __m512 lo = acc[i][0];
                    for (int r = 1; r < RV; r++) lo = _mm512_min_ps(lo, acc[i][r]);
                    if (!_mm512_cmp_ps_mask(lo, _mm512_set1_ps(bs[i][kk - 1]), _CMP_LT_OQ))
                        continue;
                    for (int r = 0; r < RV; r++)
                        harvest(acc[i][r], j + 16 * r, n, bs[i], bi[i], kk, ex[i], n_excl, banned);
                }
            }
        }
    }
}
#endif

/* Queries [q0, q1) of q (b x d, row-major, d <= 64) against the transposed store ct (d x ld,
 * ld a multiple of 64, padding rows with norm +inf). excl: b x n_excl rows never returned
 * (-1 pads) or NULL; banned: n flags or NULL. Output: b x kk ascending scores and rows
 * (+inf and -1 where fewer rows are eligible). With OpenMP the query blocks are shared out
 * among the threads of the OpenMP runtime already loaded, torch's, whose workers are the
 * ones that would otherwise spin beside the search. */
void acnkit_fused_knn(const float *ct, const float *norms, int64_t n, int64_t ld, int64_t d,
                      const float *q, int64_t q0, int64_t q1, int64_t kk,
                      const int64_t *excl, int64_t n_excl, const uint8_t *banned,
                      float *out_s, int64_t *out_i) {
#ifdef __AVX512F__
    int64_t nblk = (q1 - q0 + QB - 1) / QB;
    /* wt[(blk * d + t) * QB + i] = -2 q[t] of query q0 + blk * QB + i (0 for padding) */
    float *wt = malloc(sizeof(float) * nblk * d * QB);
    if (!wt) {
        for (int64_t r = q0; r < q1; r++)
            for (int64_t p = 0; p < kk; p++) { out_s[r * kk + p] = NAN; out_i[r * kk + p] = -2; }
        return; /* the caller sees -2 and answers with its torch kernel */
    }
    for (int64_t blk = 0; blk < nblk; blk++)
        for (int64_t t = 0; t < d; t++)
            for (int64_t i = 0; i < QB; i++) {
                int64_t r = q0 + blk * QB + i;
                wt[(blk * d + t) * QB + i] = r < q1 ? -2.0f * q[r * d + t] : 0.0f;
            }
    for (int64_t r = q0; r < q1; r++)
        for (int64_t p = 0; p < kk; p++) { out_s[r * kk + p] = INFINITY; out_i[r * kk + p] = -1; }
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    if (threads > nblk) threads = (int)nblk;
#pragma omp parallel num_threads(threads)
    {
        int id = omp_get_thread_num(), count = omp_get_num_threads();
#else
    {
        int id = 0, count = 1;
#endif
        float pad_s[QB * 64];
        int64_t pad_i[QB * 64];
        for (int64_t p = 0; p < QB * kk; p++) { pad_s[p] = -INFINITY; pad_i[p] = -1; }
        run_blocks(ct, norms, n, ld, d, q0, q1, kk, excl, n_excl, banned, out_s, out_i, wt,
                   nblk * id / count, nblk * (id + 1) / count, pad_s, pad_i);
    }
    free(wt);
#else
    (void)ct; (void)norms; (void)n; (void)ld; (void)d; (void)q; (void)q0; (void)q1;
    (void)kk; (void)excl; (void)n_excl; (void)banned; (void)out_s; (void)out_i;
#endif
}

static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused_knn",
                                    "acnkit_fused_knn, called through ctypes", -1, methods};
PyMODINIT_FUNC PyInit__fused_knn(void) { return PyModule_Create(&module); }
