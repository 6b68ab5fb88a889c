/* The SDK-HMAC-SHA256 check of one signed request in one call: canonical request, its
 * SHA-256 hex, the string to sign, HMAC-SHA256 with the key's prepared pads, and a
 * constant-time compare (shared/spec/huaweicloud-auth.md §1.4-1.7).
 *
 * Optional: imagejobs.iam.signing.verification uses it when it was compiled, and its own
 * Python otherwise (and for every case this module declines: non-ASCII text, a missing
 * signed header, a canonical request over the stack buffer). The Python is the reference;
 * tests/test_signing_compiled.py checks that both agree. SHA-256 uses the CPU's SHA
 * instructions when it has them (x86-64 SHA-NI), else portable C. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define SIGCORE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

typedef void (*compress_fn)(uint32_t state[8], const uint8_t *data, size_t blocks);

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* One round with the eight working variables renamed instead of moved (as libtomcrypt's
 * and CPython's own SHA-256 do), the message schedule kept in a rolling 16-word window. */
#define S0(x) (ROR(x, 2) ^ ROR(x, 13) ^ ROR(x, 22))
#define S1(x) (ROR(x, 6) ^ ROR(x, 11) ^ ROR(x, 25))
#define G0(x) (ROR(x, 7) ^ ROR(x, 18) ^ ((x) >> 3))
#define G1(x) (ROR(x, 17) ^ ROR(x, 19) ^ ((x) >> 10))
#define ROUND(a, b, c, d, e, f, g, h, i)                                    \
    do {                                                                    \
        uint32_t t1 = h + S1(e) + (g ^ (e & (f ^ g))) + K[i] + w[(i) & 15]; \
        d += t1;                                                            \
        h = t1 + S0(a) + ((a & b) | (c & (a | b)));                         \
    } while (0)
#define SCHEDULE(i)                                                                  \
    (w[(i) & 15] += G1(w[((i) - 2) & 15]) + w[((i) - 7) & 15] + G0(w[((i) - 15) & 15]))

static void compress_portable(uint32_t state[8], const uint8_t *data, size_t blocks) {
    uint32_t w[16];
    while (blocks--) {
        for (int i = 0; i < 16; i++) {
            w[i] = (uint32_t)data[4 * i] << 24 | (uint32_t)data[4 * i + 1] << 16 |
                   (uint32_t)data[4 * i + 2] << 8 | (uint32_t)data[4 * i + 3];
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; i += 8) {
            if (i >= 16) {
                for (int j = i; j < i + 8; j++) {
                    SCHEDULE(j);
                }
            }
            ROUND(a, b, c, d, e, f, g, h, i);
            ROUND(h, a, b, c, d, e, f, g, i + 1);
            ROUND(g, h, a, b, c, d, e, f, i + 2);
            ROUND(f, g, h, a, b, c, d, e, i + 3);
            ROUND(e, f, g, h, a, b, c, d, i + 4);
            ROUND(d, e, f, g, h, a, b, c, i + 5);
            ROUND(c, d, e, f, g, h, a, b, i + 6);
            ROUND(b, c, d, e, f, g, h, a, i + 7);
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        data += 64;
    }
}

#ifdef SIGCORE_SHANI
/* Intel's SHA extensions: four message words per group, two rounds per sha256rnds2. */
__attribute__((target("sha,sse4.1,ssse3"))) static void
compress_shani(uint32_t state[8], const uint8_t *data, size_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i state1 = _mm_loadu_si128((const __m128i *)&state[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                 /* CDAB */
    state1 = _mm_shuffle_epi32(state1, 0x1B);           /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);   /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);        /* CDGH */
    while (blocks--) {
        __m128i abef = state0, cdgh = state1, m[4];
        for (int g = 0; g < 16; g++) {
            __m128i *w = &m[g & 3];
            if (g < 4) {
                *w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), mask);
            } else {
                /* W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four at a time. */
                __m128i sum = _mm_add_epi32(_mm_sha256msg1_epu32(*w, m[(g - 3) & 3]),
                                            _mm_alignr_epi8(m[(g - 1) & 3], m[(g - 2) & 3], 4));
                *w = _mm_sha256msg2_epu32(sum, m[(g - 1) & 3]);
            }
            __m128i msg = _mm_add_epi32(*w, _mm_loadu_si128((const __m128i *)&K[4 * g]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(msg, 0x0E));
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
        data += 64;
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);              /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);           /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0);        /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);           /* ABEF */
    _mm_storeu_si128((__m128i *)&state[0], state0);
    _mm_storeu_si128((__m128i *)&state[4], state1);
}

static int cpu_has_shani(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) {
        return 0;
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1;
}
#endif

static compress_fn compress = compress_portable;

typedef struct {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t buffer[64];
    size_t used;
} sha256_ctx;

static void sha_update(sha256_ctx *ctx, const uint8_t *data, size_t size) {
    ctx->length += size;
    if (ctx->used) {
        size_t take = 64 - ctx->used;
        if (take > size) {
            take = size;
        }
        memcpy(ctx->buffer + ctx->used, data, take);
        ctx->used += take;
        data += take;
        size -= take;
        if (ctx->used < 64) {
            return;
        }
        compress(ctx->state, ctx->buffer, 1);
        ctx->used = 0;
    }
    if (size >= 64) {
        compress(ctx->state, data, size / 64);
        data += size & ~(size_t)63;
        size &= 63;
    }
    memcpy(ctx->buffer, data, size);
    ctx->used = size;
}

static void sha_final(sha256_ctx *ctx, uint8_t out[32]) {
    uint64_t bits = ctx->length * 8;
    ctx->buffer[ctx->used++] = 0x80;
    if (ctx->used > 56) {
        memset(ctx->buffer + ctx->used, 0, 64 - ctx->used);
        compress(ctx->state, ctx->buffer, 1);
        ctx->used = 0;
    }
    memset(ctx->buffer + ctx->used, 0, 56 - ctx->used);
    for (int i = 0; i < 8; i++) {
        ctx->buffer[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    compress(ctx->state, ctx->buffer, 1);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(ctx->state[i] >> 24);
        out[4 * i + 1] = (uint8_t)(ctx->state[i] >> 16);
        out[4 * i + 2] = (uint8_t)(ctx->state[i] >> 8);
        out[4 * i + 3] = (uint8_t)ctx->state[i];
    }
}

static void sha_start(sha256_ctx *ctx, const uint32_t state[8], uint64_t length) {
    memcpy(ctx->state, state, sizeof ctx->state);
    ctx->length = length;
    ctx->used = 0;
}

static const char HEX[] = "0123456789abcdef";

static void to_hex(const uint8_t *digest, char out[64]) {
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[digest[i] >> 4];
        out[2 * i + 1] = HEX[digest[i] & 15];
    }
}

/* An ASCII str's bytes (its UTF-8 and surrogateescape encodings are those bytes), or
 * NULL: the caller then declines and the Python path handles the text. Exactly str: a
 * subclass may give the Python other text (its upper(), __format__ or __hash__) than its
 * bytes, so the Python decides it. */
static const uint8_t *ascii_of(PyObject *text, Py_ssize_t *size) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) {
        return NULL;
    }
    *size = PyUnicode_GET_LENGTH(text);
    return (const uint8_t *)PyUnicode_DATA(text);
}

/* The middle of every canonical request: "\n" header block "\n" signed;names "\n". */
#define SUFFIX_MAX 8192

typedef struct {
    uint8_t data[SUFFIX_MAX];
    size_t size;
} buffer;

static int put(buffer *out, const uint8_t *data, size_t size) {
    if (size > SUFFIX_MAX - out->size) {
        return 0;
    }
    memcpy(out->data + out->size, data, size);
    out->size += size;
    return 1;
}

static int put_char(buffer *out, uint8_t ch) { return put(out, &ch, 1); }

/* The ASCII whitespace that str.strip() removes. */
static int is_space(uint8_t ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f); }

/* The part of every canonical request after the query: "\n" header block "\n"
 * signed;names "\n". 1 when built, 0 to decline (a missing or non-ASCII header, too
 * long), -1 on a Python error. */
static int build_suffix(PyObject *headers, PyObject *signed_headers, buffer *suffix) {
    suffix->size = 0;
    put_char(suffix, '\n');
    Py_ssize_t count = PyTuple_GET_SIZE(signed_headers);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(signed_headers, i);
        Py_ssize_t name_size, value_size;
        const uint8_t *name_data = ascii_of(name, &name_size);
        PyObject *value = name_data ? PyDict_GetItemWithError(headers, name) : NULL;
        if (value == NULL) {
            return PyErr_Occurred() ? -1 : 0; /* missing or non-ASCII: Python says which */
        }
        const uint8_t *value_data = ascii_of(value, &value_size);
        /* Values in the header map are trimmed (ReceivedRequest's rule) and the Python
         * signs them as they are: an untrimmed one is the Python's to sign, not trimmed
         * here into a canonical request the Python would not build. */
        if (!value_data || (value_size && (is_space(value_data[0]) ||
                                           is_space(value_data[value_size - 1])))) {
            return 0;
        }
        if (!put(suffix, name_data, name_size) || !put_char(suffix, ':') ||
            !put(suffix, value_data, value_size) || !put_char(suffix, '\n')) {
            return 0;
        }
    }
    if (!put_char(suffix, '\n')) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t name_size;
        const uint8_t *name_data = ascii_of(PyTuple_GET_ITEM(signed_headers, i), &name_size);
        if ((i && !put_char(suffix, ';')) || !put(suffix, name_data, name_size)) {
            return 0;
        }
    }
    return put_char(suffix, '\n');
}

/* What every (query, payload hash) pair of one request shares. */
typedef struct {
    uint32_t inner[8], outer[8]; /* the key's HMAC pads */
    sha256_ctx prefix;           /* "METHOD\nURI\n" hashed */
    uint8_t to_sign[256 + 64];   /* "token\ndate\n", the canonical hash's hex after it */
    size_t head_size;
    const uint8_t *signature; /* 64 lower-case hex digits */
} check;

/* 1 when set up, 0 to decline (non-ASCII, a long method, token or date). */
static int start_check(check *c, PyObject *pads, PyObject *method_text, const uint8_t *uri,
                       size_t uri_size, PyObject *token_text, PyObject *date_text,
                       PyObject *signature_text) {
    Py_ssize_t method_size, token_size, date_size, signature_size;
    const uint8_t *method = ascii_of(method_text, &method_size);
    const uint8_t *token = ascii_of(token_text, &token_size);
    const uint8_t *date = ascii_of(date_text, &date_size);
    c->signature = ascii_of(signature_text, &signature_size);
    if (!method || !token || !date || !c->signature || signature_size != 64 ||
        method_size > 32 || token_size + date_size + 2 > 256) {
        return 0;
    }
    memcpy(c->inner, PyBytes_AS_STRING(pads), 32);
    memcpy(c->outer, PyBytes_AS_STRING(pads) + 32, 32);
    /* The method upper-cased as the Python path does (ASCII only here). */
    uint8_t upper[32];
    for (Py_ssize_t i = 0; i < method_size; i++) {
        uint8_t ch = method[i];
        upper[i] = (ch >= 'a' && ch <= 'z') ? (uint8_t)(ch - 32) : ch;
    }
    sha_start(&c->prefix, IV, 0);
    sha_update(&c->prefix, upper, (size_t)method_size);
    sha_update(&c->prefix, (const uint8_t *)"\n", 1);
    sha_update(&c->prefix, uri, uri_size);
    sha_update(&c->prefix, (const uint8_t *)"\n", 1);
    memcpy(c->to_sign, token, (size_t)token_size);
    c->to_sign[token_size] = '\n';
    memcpy(c->to_sign + token_size + 1, date, (size_t)date_size);
    c->to_sign[token_size + 1 + date_size] = '\n';
    c->head_size = (size_t)(token_size + date_size + 2);
    return 1;
}

/* Does the canonical request prefix + query + suffix + payload give the signature? */
static int pair_matches(check *c, const uint8_t *query, size_t query_size, const buffer *suffix,
                        const uint8_t *payload, size_t payload_size) {
    sha256_ctx ctx = c->prefix;
    uint8_t digest[32];
    sha_update(&ctx, query, query_size);
    sha_update(&ctx, suffix->data, suffix->size);
    sha_update(&ctx, payload, payload_size);
    sha_final(&ctx, digest);
    to_hex(digest, (char *)c->to_sign + c->head_size);

    sha_start(&ctx, c->inner, 64);
    sha_update(&ctx, c->to_sign, c->head_size + 64);
    sha_final(&ctx, digest);
    sha_start(&ctx, c->outer, 64);
    sha_update(&ctx, digest, 32);
    sha_final(&ctx, digest);

    char expected[64];
    to_hex(digest, expected);
    uint8_t difference = 0; /* constant time over the 64 hex digits */
    for (int i = 0; i < 64; i++) {
        difference |= (uint8_t)(expected[i] ^ c->signature[i]);
    }
    return difference == 0;
}

/* signature_matches(pads, method, uri, queries, headers, signed_headers, payload_hashes,
 *                   token, sdk_date, signature) -> True | False | None
 *
 * True when some (query, payload hash) pair gives the signature; False when none does;
 * None when this function does not handle the input (the caller checks it in Python). */
static PyObject *signature_matches(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "signature_matches takes 10 arguments");
        return NULL;
    }
    PyObject *pads = args[0], *queries = args[3], *headers = args[4], *signed_headers = args[5],
             *payload_hashes = args[6];
    if (!PyBytes_Check(pads) || PyBytes_GET_SIZE(pads) != 64 || !PyTuple_Check(queries) ||
        !PyDict_Check(headers) || !PyTuple_Check(signed_headers) ||
        !PyList_Check(payload_hashes)) {
        PyErr_SetString(PyExc_TypeError, "signature_matches: unexpected argument types");
        return NULL;
    }
    Py_ssize_t uri_size;
    const uint8_t *uri = ascii_of(args[2], &uri_size);
    check c;
    if (!uri || !start_check(&c, pads, args[1], uri, (size_t)uri_size, args[7], args[8],
                             args[9])) {
        Py_RETURN_NONE;
    }
    buffer suffix;
    int built = build_suffix(headers, signed_headers, &suffix);
    if (built <= 0) {
        if (built < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    Py_ssize_t query_count = PyTuple_GET_SIZE(queries);
    Py_ssize_t hash_count = PyList_GET_SIZE(payload_hashes);
    for (Py_ssize_t q = 0; q < query_count; q++) {
        Py_ssize_t query_size;
        const uint8_t *query = ascii_of(PyTuple_GET_ITEM(queries, q), &query_size);
        if (!query) {
            Py_RETURN_NONE;
        }
        for (Py_ssize_t p = 0; p < hash_count; p++) {
            Py_ssize_t payload_size;
            const uint8_t *payload = ascii_of(PyList_GET_ITEM(payload_hashes, p), &payload_size);
            if (!payload) {
                Py_RETURN_NONE;
            }
            if (pair_matches(&c, query, (size_t)query_size, &suffix, payload,
                             (size_t)payload_size)) {
                Py_RETURN_TRUE;
            }
        }
    }
    Py_RETURN_FALSE;
}

/* --- verify_plain: the usual signed request checked from its raw parts, in one call -------
 *
 * What verification.verify prepares in Python, done here for the request every SDK sends
 * without a body: X-Sdk-Date signed and within the window, Host signed, no content-hash
 * header, a path of unreserved characters and slashes, a query of unreserved key=value
 * pairs. It answers only True (verify would return); anything else, a wrong signature
 * included, is None and verify's Python path decides and words it. */

#define RAW_MAX 512 /* canonical.py's _CACHED_INPUT_MAX: longer paths and queries are Python's */
#define PAIRS_MAX 64

static PyObject *NAME_DATE, *NAME_CONTENT_HASH, *SHA256_TOKEN; /* interned at import */
static const char EMPTY_SHA256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static int is_unreserved(uint8_t ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '~' || ch == '-';
}

/* Is the ASCII name in the tuple of signed header names? */
static int is_signed(PyObject *signed_headers, const char *name, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(signed_headers); i++) {
        Py_ssize_t item_size;
        const uint8_t *item = ascii_of(PyTuple_GET_ITEM(signed_headers, i), &item_size);
        if (item && item_size == size && memcmp(item, name, (size_t)size) == 0) {
            return 1;
        }
    }
    return 0;
}

static int digits(const uint8_t *text, int count, int *value) {
    int result = 0;
    for (int i = 0; i < count; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return 0;
        }
        result = result * 10 + (text[i] - '0');
    }
    *value = result;
    return 1;
}

/* X-Sdk-Date (YYYYMMDDTHHMMSSZ, a real UTC time) in seconds since the epoch; 0 when it is
 * not one (verification._signed_at's None: the Python words the error). */
static int sdk_date_seconds(const uint8_t *text, Py_ssize_t size, double *seconds) {
    int year, month, day, hour, minute, second;
    if (size != 16 || text[8] != 'T' || text[15] != 'Z' || !digits(text, 4, &year) ||
        !digits(text + 4, 2, &month) || !digits(text + 6, 2, &day) ||
        !digits(text + 9, 2, &hour) || !digits(text + 11, 2, &minute) ||
        !digits(text + 13, 2, &second)) {
        return 0;
    }
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 ||
        day > DAYS[month - 1] + (month == 2 && leap) || hour > 23 || minute > 59 ||
        second > 59) {
        return 0;
    }
    /* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
    long y = year - (month <= 2);
    long era = y / 400; /* y >= 0 here */
    long yoe = y - era * 400;
    long doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = era * 146097 + doe - 719468;
    *seconds = (double)days * 86400.0 + hour * 3600 + minute * 60 + second;
    return 1;
}

typedef struct {
    const uint8_t *key, *value;
    size_t key_size, value_size;
} pair;

static int compare_bytes(const uint8_t *a, size_t a_size, const uint8_t *b, size_t b_size) {
    int order = memcmp(a, b, a_size < b_size ? a_size : b_size);
    return order ? order : (a_size > b_size) - (a_size < b_size);
}

/* Stable insertion sort by key, then (by_value) by value: Python's sorted() of the pairs
 * (bytes compare as memcmp then length) or with key=itemgetter(0). */
static void sort_pairs(pair *pairs, int count, int by_value) {
    for (int i = 1; i < count; i++) {
        pair item = pairs[i];
        int j = i;
        while (j > 0) {
            int order = compare_bytes(pairs[j - 1].key, pairs[j - 1].key_size, item.key,
                                      item.key_size);
            if (order == 0 && by_value) {
                order = compare_bytes(pairs[j - 1].value, pairs[j - 1].value_size, item.value,
                                      item.value_size);
            }
            if (order <= 0) {
                break;
            }
            pairs[j] = pairs[j - 1];
            j--;
        }
        pairs[j] = item;
    }
}

typedef struct {
    uint8_t data[RAW_MAX + PAIRS_MAX + 1];
    size_t size;
} query_text;

static int join_pairs(const pair *pairs, int count, query_text *out) {
    out->size = 0;
    for (int i = 0; i < count; i++) {
        size_t need = (i ? 1 : 0) + pairs[i].key_size + 1 + pairs[i].value_size;
        if (need > sizeof out->data - out->size) {
            return 0;
        }
        if (i) {
            out->data[out->size++] = '&';
        }
        memcpy(out->data + out->size, pairs[i].key, pairs[i].key_size);
        out->size += pairs[i].key_size;
        out->data[out->size++] = '=';
        memcpy(out->data + out->size, pairs[i].value, pairs[i].value_size);
        out->size += pairs[i].value_size;
    }
    return 1;
}

/* canonical._compute_query_variants for a query of unreserved key=value parts: the pairs
 * sorted by key and value, and (when different) by key alone. The number of variants, 0
 * to decline. */
static int query_variants(const uint8_t *raw, size_t size, query_text variants[2]) {
    pair pairs[PAIRS_MAX];
    int count = 0;
    size_t at = 0;
    while (at <= size) {
        size_t end = at;
        while (end < size && raw[end] != '&') {
            end++;
        }
        if (end > at) { /* empty parts are skipped */
            if (count == PAIRS_MAX) {
                return 0;
            }
            size_t equals = at;
            while (equals < end && raw[equals] != '=') {
                equals++;
            }
            pair *item = &pairs[count++];
            item->key = raw + at;
            item->key_size = equals - at;
            item->value = raw + (equals < end ? equals + 1 : end);
            item->value_size = equals < end ? end - equals - 1 : 0;
            for (size_t i = 0; i < item->key_size; i++) {
                if (!is_unreserved(item->key[i])) {
                    return 0;
                }
            }
            for (size_t i = 0; i < item->value_size; i++) {
                if (!is_unreserved(item->value[i])) {
                    return 0; /* a second '=' too: Python decodes and re-encodes it */
                }
            }
        }
        at = end + 1;
    }
    pair by_key[PAIRS_MAX];
    memcpy(by_key, pairs, sizeof(pair) * (size_t)count);
    sort_pairs(pairs, count, 1);
    sort_pairs(by_key, count, 0);
    if (!join_pairs(pairs, count, &variants[0]) || !join_pairs(by_key, count, &variants[1])) {
        return 0;
    }
    int same = variants[0].size == variants[1].size &&
               memcmp(variants[0].data, variants[1].data, variants[0].size) == 0;
    return same ? 1 : 2;
}

/* verify_plain's check, shared with authenticate_plain: 1 when verified, 0 to decline (a
 * wrong signature included), -1 on a Python error. */
static int plain_verified(PyObject *pads, PyObject *method, PyObject *raw_path,
                          PyObject *raw_query, PyObject *headers, PyObject *body,
                          PyObject *signed_headers, PyObject *signature, double now,
                          double max_skew) {
    if (!PyBytes_Check(pads) || PyBytes_GET_SIZE(pads) != 64 || !PyBytes_Check(raw_path) ||
        !PyBytes_Check(raw_query) || !PyDict_Check(headers) || !PyBytes_Check(body) ||
        PyBytes_GET_SIZE(body) != 0 || !PyTuple_Check(signed_headers)) {
        return 0;
    }
    /* No body and no content-hash header: the payload hash is the empty body's. This
     * lookup comes first: it may run Python code (a key's __eq__) that could free the
     * borrowed date below before it is copied into the string to sign. */
    int has_content_hash = PyDict_Contains(headers, NAME_CONTENT_HASH);
    if (has_content_hash != 0) {
        return has_content_hash < 0 ? -1 : 0;
    }
    /* The date window and the signed-header rules (verify's _check_sdk_date, host). */
    PyObject *date = PyDict_GetItemWithError(headers, NAME_DATE);
    if (date == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_ssize_t date_size;
    const uint8_t *date_text = ascii_of(date, &date_size);
    double signed_at;
    if (!date_text || !sdk_date_seconds(date_text, date_size, &signed_at) ||
        !is_signed(signed_headers, "x-sdk-date", 10) || !is_signed(signed_headers, "host", 4)) {
        return 0;
    }
    double skew = now - signed_at;
    skew = skew < 0 ? -skew : skew;
    if (!(skew <= max_skew)) { /* NaN declines too */
        return 0;
    }
    /* The canonical URI: a path of unreserved characters and slashes is its own. */
    size_t path_size = (size_t)PyBytes_GET_SIZE(raw_path);
    const uint8_t *path = (const uint8_t *)PyBytes_AS_STRING(raw_path);
    if (path_size > RAW_MAX) {
        return 0;
    }
    uint8_t uri[RAW_MAX + 1];
    for (size_t i = 0; i < path_size; i++) {
        if (!is_unreserved(path[i]) && path[i] != '/') {
            return 0;
        }
    }
    memcpy(uri, path, path_size);
    size_t uri_size = path_size;
    if (uri_size == 0 || uri[uri_size - 1] != '/') {
        uri[uri_size++] = '/';
    }
    size_t query_size = (size_t)PyBytes_GET_SIZE(raw_query);
    if (query_size > RAW_MAX) {
        return 0;
    }
    query_text variants[2];
    int variant_count =
        query_variants((const uint8_t *)PyBytes_AS_STRING(raw_query), query_size, variants);
    if (variant_count == 0) {
        return 0;
    }
    check c; /* copies the date: no Python code ran since it was looked up */
    if (!start_check(&c, pads, method, uri, uri_size, SHA256_TOKEN, date, signature)) {
        return 0;
    }
    buffer suffix;
    int built = build_suffix(headers, signed_headers, &suffix);
    if (built <= 0) {
        return built;
    }
    for (int v = 0; v < variant_count; v++) {
        if (pair_matches(&c, variants[v].data, variants[v].size, &suffix,
                         (const uint8_t *)EMPTY_SHA256, 64)) {
            return 1;
        }
    }
    return 0; /* refused by the Python path, with its message and its count */
}

/* verify_plain(pads, method, raw_path, raw_query, headers, body, signed_headers, signature,
 *              now, max_skew) -> True | None */
static PyObject *verify_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "verify_plain takes 10 arguments");
        return NULL;
    }
    if (!PyFloat_CheckExact(args[8]) || !PyFloat_CheckExact(args[9])) {
        Py_RETURN_NONE;
    }
    int verified = plain_verified(args[0], args[1], args[2], args[3], args[4], args[5], args[6],
                                  args[7], PyFloat_AS_DOUBLE(args[8]), PyFloat_AS_DOUBLE(args[9]));
    if (verified < 0) {
        return NULL;
    }
    if (verified) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_NONE;
}

/* hmac_pads(key: bytes) -> bytes: SHA-256's state after the HMAC inner and outer key
 * blocks (RFC 2104), 64 bytes in this machine's word order, for signature_matches. */
static PyObject *hmac_pads(PyObject *module, PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "hmac_pads takes bytes");
        return NULL;
    }
    uint8_t block[64] = {0}, pad[64];
    Py_ssize_t size = PyBytes_GET_SIZE(key);
    if (size > 64) {
        sha256_ctx ctx;
        sha_start(&ctx, IV, 0);
        sha_update(&ctx, (const uint8_t *)PyBytes_AS_STRING(key), (size_t)size);
        sha_final(&ctx, block);
    } else {
        memcpy(block, PyBytes_AS_STRING(key), (size_t)size);
    }
    uint32_t states[16];
    memcpy(states, IV, 32);
    memcpy(states + 8, IV, 32);
    for (int i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x36;
    }
    compress(states, pad, 1);
    for (int i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x5c;
    }
    compress(states + 8, pad, 1);
    return PyBytes_FromStringAndSize((const char *)states, sizeof states);
}

/* sha256(data: bytes, portable: bool) -> bytes: for the tests of both compressions. */
static PyObject *sha256(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "sha256(data: bytes, portable: bool)");
        return NULL;
    }
    int portable = PyObject_IsTrue(args[1]);
    if (portable < 0) {
        return NULL;
    }
    compress_fn chosen = compress;
    if (portable) {
        compress = compress_portable;
    }
    sha256_ctx ctx;
    uint8_t digest[32];
    sha_start(&ctx, IV, 0);
    sha_update(&ctx, (const uint8_t *)PyBytes_AS_STRING(args[0]),
               (size_t)PyBytes_GET_SIZE(args[0]));
    sha_final(&ctx, digest);
    compress = chosen;
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

static PyObject *decode(PyObject *headers);

/* decode_headers(headers) -> (tuple of (name, value), {name: stripped value}) | None
 *
 * ReceivedRequest.from_raw's loop in one call, for what ASGI servers hand over: a list of
 * (bytes, bytes) with lower-case ASCII names, each once. Names are decoded as Latin-1,
 * values as UTF-8 with surrogateescape (non-UTF-8 bytes kept); map values are stripped as
 * str.strip() does. None for anything else (from_raw's Python then handles it). */
static PyObject *decode_headers(PyObject *module, PyObject *headers) {
    (void)module;
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        Py_RETURN_NONE;
    }
    return decode(headers);
}

static PyObject *decode(PyObject *headers) {
    Py_ssize_t count = PySequence_Fast_GET_SIZE(headers);
    PyObject **items = PySequence_Fast_ITEMS(headers);
    PyObject *decoded = PyTuple_New(count);
    PyObject *map = decoded ? PyDict_New() : NULL;
    if (map == NULL) {
        Py_XDECREF(decoded);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            goto decline;
        }
        PyObject *raw_name = PyTuple_GET_ITEM(pair, 0), *raw_value = PyTuple_GET_ITEM(pair, 1);
        const unsigned char *name_data = (const unsigned char *)PyBytes_AS_STRING(raw_name);
        Py_ssize_t name_size = PyBytes_GET_SIZE(raw_name);
        for (Py_ssize_t j = 0; j < name_size; j++) {
            if (name_data[j] >= 0x80 || (name_data[j] >= 'A' && name_data[j] <= 'Z')) {
                goto decline; /* upper case or non-ASCII: the general path lower-cases */
            }
        }
        PyObject *name = PyUnicode_DecodeLatin1((const char *)name_data, name_size, NULL);
        PyObject *value = name ? PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw_value),
                                                      PyBytes_GET_SIZE(raw_value),
                                                      "surrogateescape")
                               : NULL;
        PyObject *entry = value ? PyTuple_Pack(2, name, value) : NULL;
        if (entry == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(value);
            goto error;
        }
        PyTuple_SET_ITEM(decoded, i, entry);
        PyObject *stripped;
        if (PyUnicode_IS_ASCII(value)) {
            const uint8_t *text = (const uint8_t *)PyUnicode_DATA(value);
            Py_ssize_t start = 0, end = PyUnicode_GET_LENGTH(value);
            while (start < end && is_space(text[start])) {
                start++;
            }
            while (end > start && is_space(text[end - 1])) {
                end--;
            }
            if (start == 0 && end == PyUnicode_GET_LENGTH(value)) {
                stripped = Py_NewRef(value);
            } else {
                stripped = PyUnicode_Substring(value, start, end);
            }
        } else {
            stripped = PyObject_CallMethod(value, "strip", NULL);
        }
        int failed = stripped == NULL || PyDict_SetItem(map, name, stripped) < 0;
        Py_XDECREF(stripped);
        Py_DECREF(name);
        Py_DECREF(value);
        if (failed) {
            goto error;
        }
    }
    if (PyDict_GET_SIZE(map) != count) {
        goto decline; /* a repeated name: the general path joins the values */
    }
    PyObject *result = PyTuple_Pack(2, decoded, map);
    Py_DECREF(decoded);
    Py_DECREF(map);
    return result;
decline:
    Py_DECREF(decoded);
    Py_DECREF(map);
    Py_RETURN_NONE;
error:
    Py_DECREF(decoded);
    Py_DECREF(map);
    return NULL;
}

static PyObject *FIELDS[6]; /* ReceivedRequest's slots, interned at import */
static const char *FIELD_NAMES[6] = {"method", "raw_path", "raw_query", "headers", "body",
                                     "header_map"};

/* new_request(cls, method, raw_path, raw_query, headers, body) -> cls | None
 *
 * ReceivedRequest.from_raw for what decode_headers handles: the instance with its slots
 * set through their descriptors (as _with_map does, without six Python-level calls).
 * None when decode_headers declines. */
static PyObject *new_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    /* cls is made as object.__new__ makes it (a type's own tp_new, as type's, is refused:
     * a zeroed type object would crash when freed). */
    if (nargs != 6 || !PyType_Check(args[0]) ||
        ((PyTypeObject *)args[0])->tp_new != PyBaseObject_Type.tp_new) {
        PyErr_SetString(PyExc_TypeError, "new_request(cls, method, path, query, headers, body)");
        return NULL;
    }
    if (!PyList_Check(args[4]) && !PyTuple_Check(args[4])) {
        Py_RETURN_NONE;
    }
    PyObject *decoded = decode(args[4]);
    if (decoded == NULL || decoded == Py_None) {
        return decoded;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *request = cls->tp_alloc(cls, 0);
    if (request == NULL) {
        Py_DECREF(decoded);
        return NULL;
    }
    PyObject *values[6] = {args[1], args[2], args[3], PyTuple_GET_ITEM(decoded, 0), args[5],
                           PyTuple_GET_ITEM(decoded, 1)};
    for (int i = 0; i < 6; i++) {
        if (PyObject_GenericSetAttr(request, FIELDS[i], values[i]) < 0) {
            Py_DECREF(decoded);
            Py_DECREF(request);
            return NULL;
        }
    }
    Py_DECREF(decoded);
    return request;
}

/* The Authorization header of every SDK, "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<a;b>,
 * Signature=<64 hex>", parsed as parsing.parse_authorization does, in a strict subset of
 * what that accepts: ASCII, the scheme first with nothing before it, spaces (no other
 * whitespace) around the separators, an access key of printable characters. Anything else
 * (other schemes, tabs, errors of every kind) is declined: the Python parser decides it,
 * and every error message stays Python's. */
#define AUTHORIZATION_MAX 8192
#define ACCESS_KEY_MAX 128

static int starts_with(const uint8_t *text, Py_ssize_t size, Py_ssize_t at, const char *what,
                       Py_ssize_t what_size) {
    return size - at >= what_size && memcmp(text + at, what, (size_t)what_size) == 0;
}

/* SignedHeaders' name characters: parsing._AUTHORIZATION_HEAD's [0-9a-z!#$%&'*+.^_`|~-]. */
static int is_name_char(uint8_t ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '!' || ch == '#' ||
           ch == '$' || ch == '%' || ch == '&' || ch == '\'' || ch == '*' || ch == '+' ||
           ch == '.' || ch == '^' || ch == '_' || ch == '`' || ch == '|' || ch == '~' ||
           ch == '-';
}

/* " , " with any number of spaces on either side (the regex's \s*,\s*, spaces only). */
static int separator(const uint8_t *text, Py_ssize_t size, Py_ssize_t *at) {
    Py_ssize_t i = *at;
    while (i < size && text[i] == ' ') {
        i++;
    }
    if (i >= size || text[i] != ',') {
        return 0;
    }
    i++;
    while (i < size && text[i] == ' ') {
        i++;
    }
    *at = i;
    return 1;
}

static int hex_value(uint8_t ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* The plain form's three parts: the access key, the SignedHeaders names (a tuple) and the
 * signature (lower-cased), as new references. 1 when parsed, 0 when the value is not the
 * plain form (nothing set), -1 on a Python error (nothing set). */
static int parse_plain(PyObject *value, PyObject **access_out, PyObject **names_out,
                       PyObject **signature_out) {
    Py_ssize_t size;
    const uint8_t *text = ascii_of(value, &size);
    if (!text || size > AUTHORIZATION_MAX) {
        return 0;
    }
    static const char SCHEME[] = "SDK-HMAC-SHA256 ";
    Py_ssize_t i = (Py_ssize_t)sizeof SCHEME - 1;
    if (!starts_with(text, size, 0, SCHEME, i)) {
        return 0;
    }
    while (i < size && text[i] == ' ') {
        i++;
    }
    if (!starts_with(text, size, i, "Access=", 7)) {
        return 0;
    }
    i += 7;
    Py_ssize_t access_at = i;
    while (i < size && text[i] > ' ' && text[i] < 0x7f && text[i] != ',' && text[i] != '=') {
        i++;
    }
    Py_ssize_t access_size = i - access_at;
    if (access_size < 1 || access_size > ACCESS_KEY_MAX || !separator(text, size, &i) ||
        !starts_with(text, size, i, "SignedHeaders=", 14)) {
        return 0;
    }
    i += 14;
    Py_ssize_t names_at = i, count = 0;
    for (;;) {
        Py_ssize_t start = i;
        while (i < size && is_name_char(text[i])) {
            i++;
        }
        if (i == start) {
            return 0; /* an empty name */
        }
        count++;
        if (i < size && text[i] == ';') {
            i++;
            continue;
        }
        break;
    }
    Py_ssize_t names_end = i;
    if (!separator(text, size, &i) || !starts_with(text, size, i, "Signature=", 10)) {
        return 0;
    }
    i += 10;
    Py_ssize_t signature_at = i;
    if (size - i < 64) {
        return 0;
    }
    for (; i < signature_at + 64; i++) {
        if (!hex_value(text[i])) {
            return 0;
        }
    }
    for (; i < size; i++) {
        if (text[i] != ' ') {
            return 0; /* rstrip() takes more than spaces: Python decides */
        }
    }

    PyObject *access = PyUnicode_FromStringAndSize((const char *)text + access_at, access_size);
    PyObject *names = PyTuple_New(count);
    PyObject *signature = PyUnicode_New(64, 127);
    if (access == NULL || names == NULL || signature == NULL) {
        goto failed;
    }
    Py_ssize_t start = names_at, index = 0;
    for (Py_ssize_t j = names_at; j <= names_end && index < count; j++) {
        if (j == names_end || text[j] == ';') {
            PyObject *name = PyUnicode_FromStringAndSize((const char *)text + start, j - start);
            if (name == NULL) {
                goto failed;
            }
            PyTuple_SET_ITEM(names, index++, name);
            start = j + 1;
        }
    }
    if (index != count) {
        PyErr_SetString(PyExc_SystemError, "parse_authorization: name count");
        goto failed;
    }
    uint8_t *lower = PyUnicode_1BYTE_DATA(signature);
    for (Py_ssize_t j = 0; j < 64; j++) {
        uint8_t ch = text[signature_at + j];
        lower[j] = (ch >= 'A' && ch <= 'F') ? (uint8_t)(ch + 32) : ch;
    }
    *access_out = access;
    *names_out = names;
    *signature_out = signature;
    return 1;

failed:
    Py_XDECREF(access);
    Py_XDECREF(names); /* with the names set so far; the others are NULL */
    Py_XDECREF(signature);
    return -1;
}

/* parse_authorization(cls, scheme, value) -> cls((scheme, access_key, names, signature))
 *                                           | None
 *
 * cls is ParsedAuthorization (a tuple subclass), scheme SigningAlgorithm.HMAC_SHA256; the
 * signature lower-cased. None when the value is not the plain form above. */
static destructor class_dealloc; /* tp_dealloc of a class statement's type (set at import) */

static PyObject *parse_authorization(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    /* A tuple subclass made by a class statement, as ParsedAuthorization: its four items
     * are all it holds. A struct sequence (os.stat_result) reads hidden fields past them. */
    if (nargs != 3 || !PyType_Check(args[0]) ||
        !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type) ||
        ((PyTypeObject *)args[0])->tp_dealloc != class_dealloc) {
        PyErr_SetString(PyExc_TypeError, "parse_authorization(tuple subclass, scheme, value)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *access, *names, *signature;
    int parsed = parse_plain(args[2], &access, &names, &signature);
    if (parsed <= 0) {
        if (parsed < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = cls->tp_alloc(cls, 4);
    if (result == NULL) {
        Py_DECREF(access);
        Py_DECREF(names);
        Py_DECREF(signature);
        return NULL;
    }
    Py_INCREF(args[1]);
    PyTuple_SET_ITEM(result, 0, args[1]);
    PyTuple_SET_ITEM(result, 1, access);
    PyTuple_SET_ITEM(result, 2, names);
    PyTuple_SET_ITEM(result, 3, signature);
    return result;
}

/* --- authenticate_plain: IamAccess.authenticate's usual signed request in one call --------
 *
 * authenticate_plain(keys, authorization, method, raw_path, raw_query, headers, body, now_ms)
 *     -> principal | None
 *
 * keys maps an access key to (pads, usable_until, principal): a permanent key's HMAC-SHA256
 * pads (hmac_pads), the epoch ms until which it may sign (a float, as _KeyEntry's), and who
 * its requests run as. The principal is returned when authorization is the plain form
 * (parse_plain), its access key is in keys, now_ms < usable_until, and verify_plain's check
 * passes with the default 15-minute window (DEFAULT_MAX_SKEW_SECONDS): exactly the steps
 * IamAccess.authenticate takes in Python for such a request, whose acceptance this is.
 * Anything else (an unknown or temporary key, a wrong signature, a date out of the window,
 * every odd input) is None: the caller's Python path decides it, and its errors, counts and
 * messages stay the Python's. headers must be exactly a dict (verify's own rule for C). */
#define DEFAULT_MAX_SKEW_SECONDS 900.0
#define EXACT_INTEGER_MAX 9007199254740992LL /* 2**53: every int up to it is a double */

static PyObject *authenticate_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 8 || !PyDict_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "authenticate_plain(keys: dict, authorization, method, raw_path, "
                        "raw_query, headers, body, now_ms)");
        return NULL;
    }
    PyObject *keys = args[0], *headers = args[5], *now_object = args[7];
    if (!PyDict_CheckExact(headers) || !PyLong_CheckExact(now_object) ||
        !PyBytes_CheckExact(args[3]) || !PyBytes_CheckExact(args[4]) ||
        !PyBytes_CheckExact(args[6])) {
        Py_RETURN_NONE;
    }
    int overflow;
    long long now_ms = PyLong_AsLongLongAndOverflow(now_object, &overflow);
    if (overflow || now_ms > EXACT_INTEGER_MAX || now_ms < -EXACT_INTEGER_MAX) {
        Py_RETURN_NONE; /* (an int this size has no error to report) */
    }
    PyObject *access, *names, *signature;
    int parsed = parse_plain(args[1], &access, &names, &signature);
    if (parsed <= 0) {
        if (parsed < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    /* A strong reference: the header lookups below may run Python code (a hostile key's
     * __eq__) that could drop the key's entry from keys. */
    PyObject *entry = PyDict_GetItemWithError(keys, access);
    Py_XINCREF(entry);
    Py_DECREF(access);
    PyObject *result = NULL;
    if (entry == NULL) {
        if (!PyErr_Occurred()) {
            result = Py_NewRef(Py_None); /* not a permanent key this process knows */
        }
        goto done;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 3 ||
        !PyFloat_CheckExact(PyTuple_GET_ITEM(entry, 1)) ||
        !((double)now_ms < PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 1)))) {
        result = Py_NewRef(Py_None); /* disabled or expired: Python says so */
        goto done;
    }
    /* IamAccess passes now / 1000: an exact int over an exact 1000.0, rounded once, as
     * Python's int / int is. */
    int verified =
        plain_verified(PyTuple_GET_ITEM(entry, 0), args[2], args[3], args[4], headers, args[6],
                       names, signature, (double)now_ms / 1000.0, DEFAULT_MAX_SKEW_SECONDS);
    if (verified >= 0) {
        result = Py_NewRef(verified ? PyTuple_GET_ITEM(entry, 2) : Py_None);
    }
done:
    Py_XDECREF(entry);
    Py_DECREF(names);
    Py_DECREF(signature);
    return result;
}

static PyMethodDef methods[] = {
    {"signature_matches", (PyCFunction)(void (*)(void))signature_matches, METH_FASTCALL,
     "Check an SDK-HMAC-SHA256 signature: True, False, or None (not handled here)."},
    {"hmac_pads", hmac_pads, METH_O, "SHA-256 states after the HMAC key blocks."},
    {"decode_headers", decode_headers, METH_O, "ASGI headers decoded as from_raw does, or None."},
    {"new_request", (PyCFunction)(void (*)(void))new_request, METH_FASTCALL,
     "ReceivedRequest.from_raw for ASGI's headers, or None."},
    {"verify_plain", (PyCFunction)(void (*)(void))verify_plain, METH_FASTCALL,
     "The usual signed request verified from its raw parts: True, or None (Python decides)."},
    {"parse_authorization", (PyCFunction)(void (*)(void))parse_authorization, METH_FASTCALL,
     "The plain SDK-HMAC-SHA256 Authorization header parsed, or None."},
    {"authenticate_plain", (PyCFunction)(void (*)(void))authenticate_plain, METH_FASTCALL,
     "The usual request of a permanent key verified: its principal, or None (Python decides)."},
    {"sha256", (PyCFunction)(void (*)(void))sha256, METH_FASTCALL, "SHA-256 digest."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_sigcore", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sigcore(void) {
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    for (int i = 0; i < 6; i++) {
        FIELDS[i] = PyUnicode_InternFromString(FIELD_NAMES[i]);
        if (FIELDS[i] == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    NAME_DATE = PyUnicode_InternFromString("x-sdk-date");
    NAME_CONTENT_HASH = PyUnicode_InternFromString("x-sdk-content-sha256");
    SHA256_TOKEN = PyUnicode_InternFromString("SDK-HMAC-SHA256");
    if (NAME_DATE == NULL || NAME_CONTENT_HASH == NULL || SHA256_TOKEN == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    PyObject *probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){}", "probe",
                                            (PyObject *)&PyTuple_Type);
    if (probe == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    class_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
    Py_DECREF(probe);
    int shani = 0;
#ifdef SIGCORE_SHANI
    shani = cpu_has_shani();
    if (shani) {
        compress = compress_shani;
    }
#endif
    PyObject *skew = PyFloat_FromDouble(DEFAULT_MAX_SKEW_SECONDS);
    if (skew == NULL || PyModule_AddIntConstant(module, "SHA_EXTENSIONS", shani) < 0 ||
        PyModule_AddObjectRef(module, "DEFAULT_MAX_SKEW_SECONDS", skew) < 0) {
        Py_XDECREF(skew);
        Py_DECREF(module);
        return NULL;
    }
    Py_DECREF(skew);
    return module;
}
