/* The elementwise functions of acnkit.exact.functions and the row scaling of its exact
 * linear layer, one pass over the numbers in C where numpy makes ten to twenty.
 *
 * Each function performs exactly the IEEE operations of its numpy definition, in the same
 * order, with the same constants (handed over from Python by set_constants, so not even
 * a compiler's reading of a decimal literal can differ): a correctly rounded +, -, *, /
 * gives the same bits in C as in numpy, on every CPU. What could break that is a compiler
 * fusing a * b + c into one rounding (a fused multiply-add) or reordering a sum; setup.py
 * builds this file with -ffp-contract=off and without -ffast-math, and the module refuses
 * to load where the compiler says it would fuse anyway (FP_FAST_FMA with contraction on is
 * not detectable, so the build flags are the guard, and tests/test_exact_kernels.py compares
 * every function with numpy bit for bit, on the machine that built it).
 *
 * Arrays come in through the buffer protocol as C-contiguous float64 (the Python side
 * makes them so); rint is the IEEE round-half-even of numpy's round, floor and fmin/fmax
 * are exact everywhere.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__FAST_MATH__)
#error "acnkit's exact kernels must not be built with -ffast-math"
#endif

/* the lengths of functions.py's series (set_constants checks them): fixed here so that each
 * Horner loop unrolls and the loops over the numbers vectorise */
#define N_EXP 14
#define N_ERFC 10
#define N_LOG 12
#define MAX_TERMS 32
static double exp_terms[MAX_TERMS], erfc_p[MAX_TERMS], log_terms[MAX_TERMS];
static Py_ssize_t n_exp = 0, n_erfc = 0, n_log = 0;

/* Built for the CPU's widest vectors where the compiler can choose at run time (GCC on
 * x86-64 Linux): each lane of a vector operation is the same correctly rounded operation,
 * so the clones give the same bits; only speed differs (a test builds each alone,
 * -DACNKIT_NO_CLONES, and compares them). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(ACNKIT_NO_CLONES)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
static double c_ln2_hi, c_ln2_lo, c_inv_ln2, c_sqrt2, c_sqrt_half, c_exp_min, c_exp_max;
static double c_sig_range, c_sig_scale;
static int ready = 0;

static inline double pow2(int64_t k) {
    k = k < -1022 ? -1022 : k;
    k = k > 1023 ? 1023 : k;
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline int64_t biased_exponent(double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (int64_t)((bits >> 52) & 0x7FF);
}

/* floor(k / 2), as numpy's k >> 1: an arithmetic shift (what GCC and Clang do with a
 * negative signed number; C leaves it to the compiler) */
static inline int64_t half_of(int64_t k) { return k >> 1; }

#define HORNER(c, n, x, out)                                   \
    do {                                                       \
        out = (x) * (c)[(n) - 1];                              \
        out += (c)[(n) - 2];                                   \
        for (int h_ = (n) - 3; h_ >= 0; h_--) {                \
            out *= (x);                                        \
            out += (c)[h_];                                    \
        }                                                      \
    } while (0)

/* fmin(fmax(x, lo), hi) for a number that is not NaN (NaN gives lo: never read) */
static inline double clamp(double x, double lo, double hi) {
    double t = x >= lo ? x : lo;
    return t <= hi ? t : hi;
}

static inline double exp1(double x) {
    double xc = clamp(x, c_exp_min, c_exp_max);
    double k = rint(xc * c_inv_ln2);
    double r = xc - k * c_ln2_hi;
    r -= k * c_ln2_lo;
    double p;
    HORNER(exp_terms, N_EXP, r, p);
    int64_t ki = (int64_t)k;
    int64_t half = half_of(ki);
    p *= pow2(half);
    p *= pow2(ki - half);
    return isnan(x) ? x : p;
}

static inline double log1(double x) {
    if (x < 0 || isnan(x)) return NAN;
    if (x == 0) return -INFINITY;
    if (x == INFINITY) return x;
    int tiny = x < 0x1p-1000;
    double xs = tiny ? x * 0x1p64 : x;
    int64_t e = biased_exponent(xs) - 1023;
    double m = xs * pow2(-e);
    int big = m > c_sqrt2;
    if (big) m = m * 0.5;
    e = e + big - (tiny ? 64 : 0);
    double s = (m - 1.0) / (m + 1.0);
    double ss = s * s, poly;
    HORNER(log_terms, N_LOG, ss, poly);
    double series = s * poly;
    double ef = (double)e;
    double lo = ef * c_ln2_lo;
    double hi = ef * c_ln2_hi;
    return hi + (series + lo);
}

static inline double sigmoid1(double x, const double *table) {
    double t = clamp(x, -c_sig_range, c_sig_range);
    t += c_sig_range;
    t *= c_sig_scale;
    double i = floor(t);
    t -= i;
    int64_t index = (int64_t)i;
    double below = table[index];
    double out = table[index + 1];
    out -= below;
    out *= t;
    out += below;
    return isnan(x) ? x : out;
}

static inline double erfc1(double x) {
    double z = fabs(x);
    double t = 1.0 / (1.0 + 0.5 * z);
    double h;
    HORNER(erfc_p, N_ERFC, t, h);
    double zz = z * z;
    double ans = t * exp1(h - zz);
    return x >= 0 ? ans : 2.0 - ans;
}

typedef struct {
    Py_buffer in, out;
    Py_ssize_t n;
} Pair;

/* src (read) and dst (written), both C-contiguous float64 of the same length */
static int pair(PyObject *args, Pair *p, Py_buffer *extra) {
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "acnkit.exact._kernels: constants not set");
        return 0;
    }
    int ok = extra ? PyArg_ParseTuple(args, "y*w*y*", &p->in, &p->out, extra)
                   : PyArg_ParseTuple(args, "y*w*", &p->in, &p->out);
    if (!ok) return 0;
    if (p->in.len != p->out.len || p->in.len % (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(&p->in);
        PyBuffer_Release(&p->out);
        if (extra) PyBuffer_Release(extra);
        PyErr_SetString(PyExc_ValueError, "source and destination differ in length");
        return 0;
    }
    p->n = p->in.len / (Py_ssize_t)sizeof(double);
    return 1;
}

static void release(Pair *p, Py_buffer *extra) {
    PyBuffer_Release(&p->in);
    PyBuffer_Release(&p->out);
    if (extra) PyBuffer_Release(extra);
}

static inline double tanh1(double x, const double *table) {
    double out = sigmoid1(x * 2.0, table);
    out *= 2.0;
    out -= 1.0;
    return out;
}

/* loop_NAME(a, o, n, table): the function over n numbers (``table``: the sigmoid's, for
 * the two that read it; NULL for the others) */
#define LOOP(name, expr)                                                            \
    CLONES static void loop_##name(const double *restrict a, double *restrict o,    \
                                   Py_ssize_t n, const double *restrict table) {    \
        (void)table;                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                        \
            double x = a[i];                                                        \
            o[i] = (expr);                                                          \
        }                                                                           \
    }

LOOP(exp, exp1(x))
LOOP(log, log1(x))
LOOP(erfc, erfc1(x))
LOOP(normal_cdf, 0.5 * erfc1(-x * c_sqrt_half))
LOOP(sigmoid, sigmoid1(x, table))
LOOP(tanh, tanh1(x, table))

typedef void (*Loop)(const double *, double *, Py_ssize_t, const double *);

/* NAME(src, dst) or, ``tabled``, NAME(src, dst, table): a loop over a Python call's
 * buffers, without the GIL */
static PyObject *apply(PyObject *args, Loop loop, int tabled) {
    Pair p;
    Py_buffer tb;
    Py_buffer *extra = tabled ? &tb : NULL;
    if (!pair(args, &p, extra)) return NULL;
    const double *table = NULL;
    if (tabled) {
        Py_ssize_t need = (Py_ssize_t)(2 * c_sig_range * c_sig_scale) + 2;
        if (tb.len < need * (Py_ssize_t)sizeof(double)) {
            release(&p, extra);
            PyErr_SetString(PyExc_ValueError, "the sigmoid's table is too short");
            return NULL;
        }
        table = (const double *)tb.buf;
    }
    Py_BEGIN_ALLOW_THREADS
    loop((const double *)p.in.buf, (double *)p.out.buf, p.n, table);
    Py_END_ALLOW_THREADS
    release(&p, extra);
    Py_RETURN_NONE;
}

#define ENTRY(name, tabled)                                          \
    static PyObject *k_##name(PyObject *self, PyObject *args) {      \
        return apply(args, loop_##name, tabled);                     \
    }

ENTRY(exp, 0)
ENTRY(log, 0)
ENTRY(erfc, 0)
ENTRY(normal_cdf, 0)
ENTRY(sigmoid, 1)
ENTRY(tanh, 1)

/* quantize_rows(src, dst, cols, bound): each row of src (rows x cols) on the grid 2^-f,
 * f = 53 - bound - e(max |row|), as rint(x * 2^f) into dst; returns the f of every row as
 * a bytes object of int64 (the exact linear layer's activations) */
static PyObject *k_quantize_rows(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t cols;
    long long bound;
    if (!PyArg_ParseTuple(args, "y*w*nL", &in, &out, &cols, &bound)) return NULL;
    Py_ssize_t n = in.len / (Py_ssize_t)sizeof(double);
    if (in.len != out.len || cols <= 0 || n % cols) {
        PyBuffer_Release(&in);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "quantize_rows: shapes do not agree");
        return NULL;
    }
    Py_ssize_t rows = n / cols;
    PyObject *grids = PyBytes_FromStringAndSize(NULL, rows * (Py_ssize_t)sizeof(int64_t));
    if (!grids) {
        PyBuffer_Release(&in);
        PyBuffer_Release(&out);
        return NULL;
    }
    int64_t *g = (int64_t *)PyBytes_AS_STRING(grids);
    const double *a = (const double *)in.buf;
    double *o = (double *)out.buf;
    Py_BEGIN_ALLOW_THREADS for (Py_ssize_t r = 0; r < rows; r++) {
        const double *row = a + r * cols;
        double m = 0.0;
        for (Py_ssize_t c = 0; c < cols; c++) {
            double v = fabs(row[c]);
            if (v > m || isnan(v)) m = v;
            if (isnan(m)) break;
        }
        int64_t f = 53 - (int64_t)bound - (biased_exponent(m) - 1022);
        double s = pow2(f);
        g[r] = f;
        for (Py_ssize_t c = 0; c < cols; c++) o[r * cols + c] = rint(row[c] * s);
    }
    Py_END_ALLOW_THREADS PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return grids;
}

/* unscale_rows(acc, grids, scale, bias_or_None): acc (rows x cols) times 2^-f of its row,
 * times its column's scale, plus its column's bias, in place, in that order */
static PyObject *k_unscale_rows(PyObject *self, PyObject *args) {
    Py_buffer acc, grids, scale, bias;
    PyObject *bias_obj;
    if (!PyArg_ParseTuple(args, "w*y*y*O", &acc, &grids, &scale, &bias_obj)) return NULL;
    int has_bias = bias_obj != Py_None;
    if (has_bias && PyObject_GetBuffer(bias_obj, &bias, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&acc);
        PyBuffer_Release(&grids);
        PyBuffer_Release(&scale);
        return NULL;
    }
    Py_ssize_t cols = scale.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t rows = grids.len / (Py_ssize_t)sizeof(int64_t);
    int bad = cols <= 0 || acc.len != rows * cols * (Py_ssize_t)sizeof(double) ||
              (has_bias && bias.len != scale.len);
    if (!bad) {
        double *o = (double *)acc.buf;
        const int64_t *g = (const int64_t *)grids.buf;
        const double *sc = (const double *)scale.buf;
        const double *b = has_bias ? (const double *)bias.buf : NULL;
        Py_BEGIN_ALLOW_THREADS for (Py_ssize_t r = 0; r < rows; r++) {
            double s = pow2(-g[r]);
            double *row = o + r * cols;
            for (Py_ssize_t c = 0; c < cols; c++) {
                double v = row[c] * s;
                v *= sc[c];
                if (b) v += b[c];
                row[c] = v;
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&acc);
    PyBuffer_Release(&grids);
    PyBuffer_Release(&scale);
    if (has_bias) PyBuffer_Release(&bias);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "unscale_rows: shapes do not agree");
        return NULL;
    }
    Py_RETURN_NONE;
}

static int copy_terms(PyObject *seq, double *into, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(seq, "terms must be a sequence");
    if (!fast) return 0;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len < 2 || len > MAX_TERMS) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "between 2 and 32 terms");
        return 0;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        into[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (PyErr_Occurred()) {
            Py_DECREF(fast);
            return 0;
        }
    }
    *n = len;
    Py_DECREF(fast);
    return 1;
}

/* set_constants(exp_terms, erfc_p, log_terms, ln2_hi, ln2_lo, inv_ln2, sqrt2, sqrt_half,
 * exp_min, exp_max, sigmoid_range, sigmoid_scale): the numbers of functions.py itself */
static PyObject *k_set_constants(PyObject *self, PyObject *args) {
    PyObject *e, *p, *l;
    if (!PyArg_ParseTuple(args, "OOOddddddddd", &e, &p, &l, &c_ln2_hi, &c_ln2_lo, &c_inv_ln2,
                          &c_sqrt2, &c_sqrt_half, &c_exp_min, &c_exp_max, &c_sig_range,
                          &c_sig_scale))
        return NULL;
    if (!copy_terms(e, exp_terms, &n_exp) || !copy_terms(p, erfc_p, &n_erfc) ||
        !copy_terms(l, log_terms, &n_log))
        return NULL;
    if (n_exp != N_EXP || n_erfc != N_ERFC || n_log != N_LOG) {
        PyErr_SetString(PyExc_ValueError, "the series' lengths differ from the kernels' own");
        return NULL;
    }
    ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_constants", k_set_constants, METH_VARARGS, "the constants of functions.py"},
    {"exp", k_exp, METH_VARARGS, "exp(src, dst)"},
    {"log", k_log, METH_VARARGS, "log(src, dst)"},
    {"erfc", k_erfc, METH_VARARGS, "erfc(src, dst)"},
    {"normal_cdf", k_normal_cdf, METH_VARARGS, "normal_cdf(src, dst)"},
    {"sigmoid", k_sigmoid, METH_VARARGS, "sigmoid(src, dst, table)"},
    {"tanh", k_tanh, METH_VARARGS, "tanh(src, dst, table)"},
    {"quantize_rows", k_quantize_rows, METH_VARARGS, "quantize_rows(src, dst, cols, bound)"},
    {"unscale_rows", k_unscale_rows, METH_VARARGS, "unscale_rows(acc, grids, scale, bias)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "acnkit's exact elementwise kernels", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
