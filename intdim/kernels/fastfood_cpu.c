/* Fastfood block rows on the CPU: gather + Walsh-Hadamard transform (+ scale, + add) in one pass.
 *
 * Compiled on first use by intdim/kernels/cpu.py with the system C compiler and loaded through
 * ctypes; the pure-torch code in intdim/hadamard.py and intdim/projection.py stays the reference.
 *
 * Why a kernel: in eager torch the transform of a row runs as Kronecker digits (small matmuls),
 * ~36 flops per element for LL = 1024 at MKL's ~65 GFLOP/s on one core, and every step is a
 * separate pass over the chunk. A butterfly does 1 add per element per stage, and here a whole
 * row (4 KB for LL = 1024) is transformed while it sits in L1: gather, 10 stages and the scaled
 * store in one visit. The four smallest strides (h = 1..8) are done inside a 16-float vector with
 * shuffles, the larger ones two stages at a time (radix 4), so a row of 1024 takes 1 + 3 passes
 * over L1.
 *
 * Exactness: a butterfly computes a + b and a - b in float32 and the only multiplication is the
 * final scale (no FMA contraction: built with -ffp-contract=off), so results differ from the
 * matmul path only by float32 rounding order. Gradient sums across rows accumulate in double.
 *
 * Every row index is an int16 or int32 (Fastfood keeps int16 for big models); rows are
 * independent, so callers split them across threads (each thread its own accumulators).
 * Functions return 0, or -1 if a work buffer could not be allocated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));

#if defined(__clang__)
#define SHUF(x, ...) __builtin_shufflevector((x), (x), __VA_ARGS__)
#else
typedef int32_t v16i __attribute__((vector_size(64)));
#define SHUF(x, ...) __builtin_shuffle((x), (v16i){__VA_ARGS__})
#endif

/* Rows longer than this are transformed in sub-blocks first (all strides below it while the
 * sub-block is in L1/L2), then the remaining strides run over the whole row. */
#define SUB_BLOCK 4096

static inline v16 ld(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void st(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* Strides 1, 2, 4, 8 inside one vector: y_j = x_{j^h} + s_j x_j with s_j = +1 where bit h of j
 * is clear (y = a + b) and -1 where it is set (y = a - b). s_j x_j is exact, so each stage rounds
 * once, like the scalar butterfly. */
static inline v16 radix16(v16 x) {
    const v16 s1 = {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
    const v16 s2 = {1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1};
    const v16 s4 = {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1};
    const v16 s8 = {1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};
    x = SHUF(x, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14) + s1 * x;
    x = SHUF(x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13) + s2 * x;
    x = SHUF(x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11) + s4 * x;
    x = SHUF(x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7) + s8 * x;
    return x;
}

/* Butterfly stages with strides h0 <= h < h1 (h0 >= 16) over t[0..n), two stages per pass. */
static void stages(float *t, int64_t n, int64_t h0, int64_t h1) {
    int64_t h = h0;
    while (h < h1) {
        if (2 * h < h1) {
            for (int64_t i = 0; i < n; i += 4 * h) {
                for (int64_t j = i; j < i + h; j += 16) {
                    v16 a = ld(t + j), b = ld(t + j + h), c = ld(t + j + 2 * h),
                        d = ld(t + j + 3 * h);
                    v16 s0 = a + b, s1 = a - b, s2 = c + d, s3 = c - d;
                    st(t + j, s0 + s2);
                    st(t + j + h, s1 + s3);
                    st(t + j + 2 * h, s0 - s2);
                    st(t + j + 3 * h, s1 - s3);
                }
            }
            h *= 4;
        } else {
            for (int64_t i = 0; i < n; i += 2 * h) {
                for (int64_t j = i; j < i + h; j += 16) {
                    v16 a = ld(t + j), b = ld(t + j + h);
                    st(t + j, a + b);
                    st(t + j + h, a - b);
                }
            }
            h *= 2;
        }
    }
}

static void scalar_fwht(float *t, int64_t n) {
    for (int64_t h = 1; h < n; h *= 2) {
        for (int64_t i = 0; i < n; i += 2 * h) {
            for (int64_t j = i; j < i + h; j++) {
                float a = t[j], b = t[j + h];
                t[j] = a + b;
                t[j + h] = a - b;
            }
        }
    }
}

/* t <- H_n src (src read directly, or gathered as src[idx[j]]; idx int16 or int32 or none). */
static void row_transform(float *t, int64_t n, const float *src, const void *idx, int idx_bytes) {
    const int16_t *i16 = idx_bytes == 2 ? (const int16_t *)idx : NULL;
    const int32_t *i32 = idx_bytes == 4 ? (const int32_t *)idx : NULL;
    if (n < 16) {
        for (int64_t j = 0; j < n; j++)
            t[j] = i32 ? src[i32[j]] : i16 ? src[i16[j]] : src[j];
        scalar_fwht(t, n);
        return;
    }
    int64_t sub = n < SUB_BLOCK ? n : SUB_BLOCK;
    for (int64_t i = 0; i < n; i += sub) {
        for (int64_t j = i; j < i + sub; j += 16) {
            v16 v;
            if (i32) {
                for (int k = 0; k < 16; k++) v[k] = src[i32[j + k]];
            } else if (i16) {
                for (int k = 0; k < 16; k++) v[k] = src[i16[j + k]];
            } else {
                v = ld(src + j);
            }
            st(t + j, radix16(v));
        }
        stages(t + i, sub, 16, sub);
    }
    stages(t, n, sub, n);
}

/* o = scale * t (+ a); a may alias o. */
static void store_row(float *o, const float *t, int64_t n, float scale, const float *a) {
    if (a)
        for (int64_t k = 0; k < n; k++) o[k] = scale * t[k] + a[k];
    else
        for (int64_t k = 0; k < n; k++) o[k] = scale * t[k];
}

/* out[r] = scale * H x[r] (+ add[r]) for `rows` rows of n. out may alias x, add may alias out. */
int ff_fwht_rows(const float *x, float *out, int64_t rows, int64_t n, float scale,
                 const float *add) {
    float *t = malloc(sizeof(float) * n);
    if (!t) return -1;
    for (int64_t r = 0; r < rows; r++) {
        row_transform(t, n, x + r * n, NULL, 0);
        store_row(out + r * n, t, n, scale, add ? add + r * n : NULL);
    }
    free(t);
    return 0;
}

/* out[k] = post[k] * (H pad(pre * x))[k] for k < n_out, with x (n_x <= n) zero-padded to n: the
 * O(d log d) ends of Fastfood (G H B x before the blocks, B H G acc after them) in one call. */
int ff_diag_fwht_diag(const float *x, int64_t n_x, const float *pre, int64_t n, const float *post,
                      int64_t n_out, float *out) {
    float *t = malloc(sizeof(float) * n);
    float *src = malloc(sizeof(float) * n);
    if (!t || !src) {
        free(t);
        free(src);
        return -1;
    }
    for (int64_t j = 0; j < n; j++) src[j] = j < n_x ? x[j] * pre[j] : 0.0f;
    row_transform(t, n, src, NULL, 0);
    for (int64_t k = 0; k < n_out; k++) out[k] = post[k] * t[k];
    free(t);
    free(src);
    return 0;
}

/* Fastfood forward rows: out[r] = scale * H prep[perm[r]] (+ add[r]); perm is (rows, n). */
int ff_forward_rows(const float *prep, const void *perm, int idx_bytes, int64_t rows, int64_t n,
                    float scale, const float *add, float *out) {
    float *t = malloc(sizeof(float) * n);
    if (!t) return -1;
    for (int64_t r = 0; r < rows; r++) {
        row_transform(t, n, prep, (const char *)perm + r * n * idx_bytes, idx_bytes);
        store_row(out + r * n, t, n, scale, add ? add + r * n : NULL);
    }
    free(t);
    return 0;
}

/* <a, b> in float32 with 16 lanes (a fixed order: the result does not depend on the build). */
static float dot(const float *a, const float *b, int64_t n) {
    if (n < 16) {
        float s = 0.0f;
        for (int64_t k = 0; k < n; k++) s += a[k] * b[k];
        return s;
    }
    v16 s = {0};
    for (int64_t k = 0; k < n; k += 16) s += ld(a + k) * ld(b + k);
    float total = 0.0f;
    for (int k = 0; k < 16; k++) total += s[k];
    return total;
}

/* Fastfood transpose rows: t_r = (scale * H g[r])[inv[r]], then any of
 *   out[r] = t_r                       (the rows themselves)
 *   acc   += sum_r weight[r] * t_r     (weight NULL: 1)
 *   dots[r] = <t_r, prep>              (SAID's per-row lambda gradient terms)
 * The scale is common to all rows, so it is applied once at the end of the sum and of each dot.
 * Sums run in float32 over runs of FLUSH rows and are then added into double accumulators: as
 * fast as a float sum, and the rounding error grows only within a run, not with the number of
 * rows (122k for RoBERTa-base at LL = 1024).
 */
#define FLUSH 64
int ff_transpose_rows(const float *g, const void *inv, int idx_bytes, int64_t rows, int64_t n,
                      float scale, float *out, float *acc, const float *weight, const float *prep,
                      float *dots) {
    float *t = malloc(sizeof(float) * n);
    float *u = malloc(sizeof(float) * n);
    float *part = acc ? calloc(n, sizeof(float)) : NULL;
    double *sum = acc ? calloc(n, sizeof(double)) : NULL;
    if (!t || !u || (acc && (!part || !sum))) {
        free(t);
        free(u);
        free(part);
        free(sum);
        return -1;
    }
    const int16_t *i16 = idx_bytes == 2 ? (const int16_t *)inv : NULL;
    const int32_t *i32 = idx_bytes == 4 ? (const int32_t *)inv : NULL;
    for (int64_t r = 0; r < rows; r++) {
        row_transform(t, n, g + r * n, NULL, 0);
        if (i32) {
            const int32_t *ix = i32 + r * n;
            for (int64_t k = 0; k < n; k++) u[k] = t[ix[k]];
        } else {
            const int16_t *ix = i16 + r * n;
            for (int64_t k = 0; k < n; k++) u[k] = t[ix[k]];
        }
        if (out) store_row(out + r * n, u, n, scale, NULL);
        if (part) {
            const float w = weight ? weight[r] : 1.0f;
            for (int64_t k = 0; k < n; k++) part[k] += w * u[k];
            if ((r + 1) % FLUSH == 0 || r + 1 == rows)
                for (int64_t k = 0; k < n; k++) {
                    sum[k] += part[k];
                    part[k] = 0.0f;
                }
        }
        if (dots) dots[r] = scale * dot(u, prep, n);
    }
    if (acc)
        for (int64_t k = 0; k < n; k++) acc[k] += (float)(scale * sum[k]);
    free(t);
    free(u);
    free(part);
    free(sum);
    return 0;
}
