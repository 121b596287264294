/* Two SHA-256 states over the same bytes in one pass, with the x86 SHA extensions.
 *
 * The gateway hashes every upload twice with SHA-256: the whole file (its address) and each
 * chunk (the chunk's address). Chunks start on 64-byte block boundaries of the file, so both
 * hashes compress the same blocks: the message schedule is computed once and the two round
 * chains run interleaved, which keeps the SHA unit busy (one chain alone waits on the latency
 * of each round instruction). Used through tgateway.storage.hashing, which falls back to
 * hashlib where this module was not built or the CPU lacks the instructions.
 *
 * compress(state_a, state_b, data): state_a and state_b are writable 32-byte buffers (eight
 * native uint32 words), state_b may be None; data is a multiple of 64 bytes. The GIL is
 * released while compressing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <cpuid.h>
#define HAVE_SHANI_CODE 1

static const uint32_t K[64] = {
0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};

#define LOADSTATE(st, S0, S1) do { __m128i t_ = _mm_loadu_si128((const __m128i*)&(st)[0]); \
    S1 = _mm_loadu_si128((const __m128i*)&(st)[4]); t_ = _mm_shuffle_epi32(t_, 0xB1); \
    S1 = _mm_shuffle_epi32(S1, 0x1B); S0 = _mm_alignr_epi8(t_, S1, 8); S1 = _mm_blend_epi16(S1, t_, 0xF0); } while (0)
#define STORESTATE(st, S0, S1) do { __m128i t_ = _mm_shuffle_epi32(S0, 0x1B); __m128i u_ = _mm_shuffle_epi32(S1, 0xB1); \
    _mm_storeu_si128((__m128i*)&(st)[0], _mm_blend_epi16(t_, u_, 0xF0)); \
    _mm_storeu_si128((__m128i*)&(st)[4], _mm_alignr_epi8(u_, t_, 8)); } while (0)

__attribute__((target("sha,sse4.1,ssse3")))
static void sha256_blocks_2x(uint32_t *sa, uint32_t *sb, const uint8_t *data, size_t nblocks)
{
    const __m128i MASK = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i A0, A1, B0, B1;
    LOADSTATE(sa, A0, A1);
    LOADSTATE(sb, B0, B1);
    for (size_t n = 0; n < nblocks; n++, data += 64) {
        __m128i a0s = A0, a1s = A1, b0s = B0, b1s = B1;
        __m128i W[4];
        for (int g = 0; g < 16; g++) {
            __m128i w;
            if (g < 4) {
                w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i*)(data + 16 * g)), MASK);
            } else {
                __m128i t = _mm_sha256msg1_epu32(W[g & 3], W[(g + 1) & 3]);
                t = _mm_add_epi32(t, _mm_alignr_epi8(W[(g + 3) & 3], W[(g + 2) & 3], 4));
                w = _mm_sha256msg2_epu32(t, W[(g + 3) & 3]);
            }
            W[g & 3] = w;
            __m128i m = _mm_add_epi32(w, _mm_loadu_si128((const __m128i*)&K[4 * g]));
            __m128i m2 = _mm_shuffle_epi32(m, 0x0E);
            A1 = _mm_sha256rnds2_epu32(A1, A0, m);
            B1 = _mm_sha256rnds2_epu32(B1, B0, m);
            A0 = _mm_sha256rnds2_epu32(A0, A1, m2);
            B0 = _mm_sha256rnds2_epu32(B0, B1, m2);
        }
        A0 = _mm_add_epi32(A0, a0s); A1 = _mm_add_epi32(A1, a1s);
        B0 = _mm_add_epi32(B0, b0s); B1 = _mm_add_epi32(B1, b1s);
    }
    STORESTATE(sa, A0, A1);
    STORESTATE(sb, B0, B1);
}

static int cpu_has_shani(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & bit_SSSE3) || !(c & bit_SSE4_1)) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0; /* SHA */
}
#else
#define HAVE_SHANI_CODE 0
static int cpu_has_shani(void) { return 0; }
#endif

static int get_state(PyObject *obj, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != 32) {
        PyErr_Format(PyExc_ValueError, "%s must be 32 bytes", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *compress(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *b_obj;
    Py_buffer a, b, data;
    int have_b = 0;
    if (!PyArg_ParseTuple(args, "OOy*", &a_obj, &b_obj, &data)) return NULL;
    if (!cpu_has_shani()) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no SHA extensions");
        return NULL;
    }
    if (data.len % 64) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "data must be a multiple of 64 bytes");
        return NULL;
    }
    if (get_state(a_obj, &a, "state_a") < 0) { PyBuffer_Release(&data); return NULL; }
    if (b_obj != Py_None) {
        if (get_state(b_obj, &b, "state_b") < 0) {
            PyBuffer_Release(&a); PyBuffer_Release(&data); return NULL;
        }
        have_b = 1;
    }
#if HAVE_SHANI_CODE
    Py_BEGIN_ALLOW_THREADS
    {
        /* one state: the second chain runs on a scratch copy (only the last block or two of a
           message are compressed that way, when a digest is finished) */
        uint32_t scratch[8];
        memcpy(scratch, a.buf, 32);
        sha256_blocks_2x((uint32_t *)a.buf, have_b ? (uint32_t *)b.buf : scratch,
                         (const uint8_t *)data.buf, (size_t)data.len / 64);
    }
    Py_END_ALLOW_THREADS
#endif
    if (have_b) PyBuffer_Release(&b);
    PyBuffer_Release(&a);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *available(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(HAVE_SHANI_CODE && cpu_has_shani());
}

static PyMethodDef methods[] = {
    {"compress", compress, METH_VARARGS, "compress(state_a, state_b_or_None, data): SHA-256 blocks"},
    {"available", available, METH_NOARGS, "Whether this CPU runs compress()"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sha256x2", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sha256x2(void) { return PyModule_Create(&module); }
