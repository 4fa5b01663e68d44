/*
 * Optional accelerator for tattler_etcd.codec.decode: protobuf wire bytes ->
 * the JSON-shaped dict, in one pass, with no upb message in between.
 *
 * It knows no Kubernetes rule of its own. tattler_etcd/codec/_fast.py turns
 * the schema and the pure-Python converter's rules (_convert.py) into tables
 * (one list per message, one tuple per field, see FIELD_* and MSG_* below)
 * and this file only executes them. Whatever is unusual -- unknown fields, a
 * wire type the schema does not expect, packed repeated numbers, a message
 * field repeated on the wire (protobuf merges those), invalid UTF-8, an
 * IntOrString of an impossible type, nesting deeper than MAX_DEPTH, any
 * Python error -- makes decode() return None, and the caller runs the
 * pure-Python path, which gives the same result or the right error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* types */
enum { T_STRING = 1, T_BYTES, T_BOOL, T_INT32, T_INT64, T_UINT32, T_UINT64, T_DOUBLE, T_FLOAT, T_MSG };
/* labels */
enum { L_OPT = 0, L_REP = 1, L_MAP = 2 };
/* modes: how a field goes into the dict (see _fast.py) */
enum {
    M_SCALAR = 1,      /* d[k] = v (zero when absent) */
    M_SCALAR_OMIT,     /* if v: d[k] = v */
    M_PRESENCE,        /* present: d[k] = value; absent: d[k] = None when NULL_ABSENT */
    M_BYTES_OMIT,      /* if v: d[k] = b64(v) */
    M_COLLECTION,      /* rep/map: non-empty: d[k] = list/dict; else None when NULL_ABSENT */
    M_MSG,             /* d[k] = sub(value or an empty message) */
    M_MSG_OMITZERO,    /* x = sub(value or empty); if x != zero: d[k] = x */
    M_STRLIST_OMIT,    /* a named []string, omitempty: non-empty items: d[k] = list */
    M_STRLIST_PRESENCE,/* present: d[k] = list(items); absent: d[k] = None */
    M_INLINE           /* sub's keys go into d */
};
/* specials */
enum { S_NONE = 0, S_TIME, S_MICROTIME, S_DURATION, S_QUANTITY, S_INTORSTRING, S_RAWEXT, S_FIELDSV1, S_STRINGLIST };

/* field tuple: (type, label, mode, key, sub, null_absent, zero) */
enum { F_TYPE, F_LABEL, F_MODE, F_KEY, F_SUB, F_NULL_ABSENT, F_ZERO };
/* message list: [lookup(bytes), fields(tuple), special, sparse, static, dyn, reorder, order,
 *                types(bytes), labels(bytes), modes(bytes)]: the last three per field index, read
 *                without touching a Python int */
enum { G_LOOKUP, G_FIELDS, G_SPECIAL, G_SPARSE, G_STATIC, G_DYN, G_REORDER, G_ORDER, G_TYPES, G_LABELS, G_MODES };

#define MAX_DEPTH 100

static PyObject *fmt_time, *fmt_micro, *fmt_duration, *embedded, *b64s, *str_zero, *empty_str;

typedef struct {
    int present;
    PyObject *obj;        /* scalar value, or the list/dict of a collection */
    const char *p;        /* an optional message: its bytes */
    Py_ssize_t n;
} Slot;

/* A bail-out: no Python error set, NULL returned: the caller falls back to Python. */
#define BAIL NULL

static int read_varint(const char **pp, const char *end, uint64_t *out) {
    const char *p = *pp;
    uint64_t v = 0;
    int shift = 0;
    while (p < end && shift < 70) {
        unsigned char b = (unsigned char)*p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 1;
        }
        shift += 7;
    }
    return 0;
}

static PyObject *msg_value(PyObject *spec, const char *p, Py_ssize_t n, int depth);
static int msg_fill(PyObject *spec, const char *p, Py_ssize_t n, PyObject *d, int depth);

static PyObject *scalar(int type, uint64_t v, const char *p, Py_ssize_t n) {
    switch (type) {
    case T_STRING: return PyUnicode_DecodeUTF8(p, n, NULL);
    case T_BYTES: return PyBytes_FromStringAndSize(p, n);
    case T_BOOL: return PyBool_FromLong(v != 0);
    case T_INT32: return PyLong_FromLong((long)(int32_t)v);
    case T_INT64: return PyLong_FromLongLong((long long)(int64_t)v);
    case T_UINT32: return PyLong_FromUnsignedLong((unsigned long)(uint32_t)v);
    case T_UINT64: return PyLong_FromUnsignedLongLong((unsigned long long)v);
    case T_DOUBLE: { double x; memcpy(&x, &v, 8); return PyFloat_FromDouble(x); }
    case T_FLOAT: { float x; uint32_t u = (uint32_t)v; memcpy(&x, &u, 4); return PyFloat_FromDouble((double)x); }
    }
    return BAIL;
}

static int wire_type_of(int type) {
    switch (type) {
    case T_STRING: case T_BYTES: case T_MSG: return 2;
    case T_DOUBLE: return 1;
    case T_FLOAT: return 5;
    default: return 0;
    }
}

/* The JSON value of one element (a repeated element, a map value, a present optional). */
static PyObject *element(int type, PyObject *sub, uint64_t v, const char *p, Py_ssize_t n, int depth) {
    if (type == T_MSG)
        return msg_value(sub, p, n, depth + 1);
    if (type == T_BYTES) {
        PyObject *b = PyBytes_FromStringAndSize(p, n);
        if (!b) return NULL;
        PyObject *s = PyObject_CallOneArg(b64s, b);
        Py_DECREF(b);
        return s;
    }
    return scalar(type, v, p, n);
}

/* Parse a message's fields into slots. 0 on bail or error. */
static int parse_slots(PyObject *spec, const char *p, Py_ssize_t n, Slot *slots, Py_ssize_t nf, int depth) {
    PyObject *lookup = PyList_GET_ITEM(spec, G_LOOKUP);
    PyObject *fields = PyList_GET_ITEM(spec, G_FIELDS);
    const unsigned char *lk = (const unsigned char *)PyBytes_AS_STRING(lookup);
    const unsigned char *types = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_TYPES));
    const unsigned char *labels = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_LABELS));
    Py_ssize_t lk_n = PyBytes_GET_SIZE(lookup);
    const char *end = p + n;
    while (p < end) {
        uint64_t tag, v = 0;
        if (!read_varint(&p, end, &tag)) return 0;
        uint64_t number = tag >> 3;
        int wt = (int)(tag & 7);
        if (number >= (uint64_t)lk_n || lk[number] == 0) return 0;  /* unknown field */
        Py_ssize_t i = lk[number] - 1;
        if (i >= nf) return 0;
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        int type = types[i];
        int label = labels[i];
        int want = label == L_MAP ? 2 : wire_type_of(type);
        if (wt != want) return 0;  /* unknown to upb as well, or packed numbers */
        const char *vp = NULL;
        Py_ssize_t vn = 0;
        if (wt == 0) {
            if (!read_varint(&p, end, &v)) return 0;
        } else if (wt == 1) {
            if (end - p < 8) return 0;
            memcpy(&v, p, 8);
            p += 8;
        } else if (wt == 5) {
            uint32_t u;
            if (end - p < 4) return 0;
            memcpy(&u, p, 4);
            v = u;
            p += 4;
        } else {
            uint64_t len;
            if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return 0;
            vp = p;
            vn = (Py_ssize_t)len;
            p += len;
        }
        Slot *s = &slots[i];
        PyObject *sub = PyTuple_GET_ITEM(f, F_SUB);
        if (label == L_REP) {
            if (!s->obj && !(s->obj = PyList_New(0))) return 0;
            PyObject *x = element(type, sub, v, vp, vn, depth);
            if (!x) return 0;
            int r = PyList_Append(s->obj, x);
            Py_DECREF(x);
            if (r < 0) return 0;
            s->present = 1;
        } else if (label == L_MAP) {
            /* an entry: key 1 (string), value 2 */
            const char *q = vp, *qe = vp + vn;
            PyObject *key = NULL, *val = NULL;
            while (q < qe) {
                uint64_t t2, v2 = 0;
                if (!read_varint(&q, qe, &t2)) goto map_fail;
                int n2 = (int)(t2 >> 3), w2 = (int)(t2 & 7);
                const char *ep = NULL;
                Py_ssize_t en = 0;
                if (n2 == 1 && w2 == 2) {
                    uint64_t len;
                    if (!read_varint(&q, qe, &len) || len > (uint64_t)(qe - q)) goto map_fail;
                    Py_XDECREF(key);
                    key = PyUnicode_DecodeUTF8(q, (Py_ssize_t)len, NULL);
                    if (!key) goto map_fail;
                    q += len;
                } else if (n2 == 2 && w2 == wire_type_of(type)) {
                    if (w2 == 0) {
                        if (!read_varint(&q, qe, &v2)) goto map_fail;
                    } else if (w2 == 2) {
                        uint64_t len;
                        if (!read_varint(&q, qe, &len) || len > (uint64_t)(qe - q)) goto map_fail;
                        ep = q;
                        en = (Py_ssize_t)len;
                        q += len;
                    } else {
                        goto map_fail;  /* fixed-size map values: none in the schema */
                    }
                    Py_XDECREF(val);
                    val = element(type, sub, v2, ep, en, depth);
                    if (!val) goto map_fail;
                } else {
                    goto map_fail;
                }
            }
            if (!key && !(key = PyUnicode_FromStringAndSize("", 0))) goto map_fail;
            if (!val && !(val = element(type, sub, 0, "", 0, depth))) goto map_fail;
            if (!s->obj && !(s->obj = PyDict_New())) goto map_fail;
            if (PyDict_SetItem(s->obj, key, val) < 0) goto map_fail;
            Py_DECREF(key);
            Py_DECREF(val);
            s->present = 1;
            continue;
        map_fail:
            Py_XDECREF(key);
            Py_XDECREF(val);
            return 0;
        } else if (type == T_MSG) {
            if (s->present) return 0;  /* a repeated optional message: upb merges; Python decides */
            s->present = 1;
            s->p = vp;
            s->n = vn;
        } else {
            PyObject *x = scalar(type, v, vp, vn);
            if (!x) return 0;
            Py_XSETREF(s->obj, x);
            s->present = 1;
        }
    }
    return 1;
}

static PyObject *clone_zero(PyObject *v) {
    if (!PyDict_CheckExact(v)) {
        Py_INCREF(v);
        return v;
    }
    PyObject *d = PyDict_New(), *k, *x;
    Py_ssize_t pos = 0;
    if (!d) return NULL;
    while (PyDict_Next(v, &pos, &k, &x)) {
        PyObject *c = clone_zero(x);
        if (!c || PyDict_SetItem(d, k, c) < 0) {
            Py_XDECREF(c);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(c);
    }
    return d;
}

static int set_item(PyObject *d, PyObject *k, PyObject *v) {
    if (!v) return -1;
    int r = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return r;
}

static PyObject *sorted_dict(PyObject *m) {
    PyObject *keys = PyDict_Keys(m);
    if (!keys) return NULL;
    if (PyList_Sort(keys) < 0) { Py_DECREF(keys); return NULL; }
    PyObject *d = PyDict_New();
    if (!d) { Py_DECREF(keys); return NULL; }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (PyDict_SetItem(d, k, PyDict_GetItem(m, k)) < 0) { Py_DECREF(keys); Py_DECREF(d); return NULL; }
    }
    Py_DECREF(keys);
    return d;
}

/* Put field i into d, as the generated converter does (present or not). -1 on bail/error. */
static int emit(PyObject *d, PyObject *f, Slot *s, int mode, int type, int depth) {
    PyObject *key = PyTuple_GET_ITEM(f, F_KEY);
    PyObject *sub = PyTuple_GET_ITEM(f, F_SUB);
    int null_absent = PyTuple_GET_ITEM(f, F_NULL_ABSENT) == Py_True;
    switch (mode) {
    case M_SCALAR:
        if (s->present) return PyDict_SetItem(d, key, s->obj);
        return PyDict_SetItem(d, key, PyTuple_GET_ITEM(f, F_ZERO));
    case M_SCALAR_OMIT:
        if (s->present) {
            int t = PyObject_IsTrue(s->obj);
            if (t < 0) return -1;
            if (t) return PyDict_SetItem(d, key, s->obj);
        }
        return 0;
    case M_PRESENCE:
        if (s->present) {
            if (type == T_MSG) return set_item(d, key, msg_value(sub, s->p, s->n, depth + 1));
            if (type == T_BYTES) return set_item(d, key, PyObject_CallOneArg(b64s, s->obj));
            return PyDict_SetItem(d, key, s->obj);
        }
        return null_absent ? PyDict_SetItem(d, key, Py_None) : 0;
    case M_BYTES_OMIT:
        if (s->present && PyBytes_GET_SIZE(s->obj) > 0) return set_item(d, key, PyObject_CallOneArg(b64s, s->obj));
        return 0;
    case M_COLLECTION:
        if (s->present) {
            if (PyDict_CheckExact(s->obj)) return set_item(d, key, sorted_dict(s->obj));
            return PyDict_SetItem(d, key, s->obj);
        }
        return null_absent ? PyDict_SetItem(d, key, Py_None) : 0;
    case M_MSG:
        return set_item(d, key, msg_value(sub, s->present ? s->p : "", s->present ? s->n : 0, depth + 1));
    case M_MSG_OMITZERO: {
        PyObject *x = msg_value(sub, s->present ? s->p : "", s->present ? s->n : 0, depth + 1);
        if (!x) return -1;
        int eq = PyObject_RichCompareBool(x, PyTuple_GET_ITEM(f, F_ZERO), Py_EQ);
        if (eq < 0 || eq == 1) { Py_DECREF(x); return eq < 0 ? -1 : 0; }
        return set_item(d, key, x);
    }
    case M_STRLIST_OMIT:
    case M_STRLIST_PRESENCE: {
        if (!s->present) return mode == M_STRLIST_PRESENCE ? PyDict_SetItem(d, key, Py_None) : 0;
        PyObject *x = msg_value(sub, s->p, s->n, depth + 1);
        if (!x) return -1;
        if (mode == M_STRLIST_OMIT && PyList_GET_SIZE(x) == 0) { Py_DECREF(x); return 0; }
        return set_item(d, key, x);
    }
    case M_INLINE:
        return msg_fill(sub, s->present ? s->p : "", s->present ? s->n : 0, d, depth + 1) ? 0 : -1;
    }
    return -1;
}

static void free_slots(Slot *slots, Py_ssize_t nf) {
    for (Py_ssize_t i = 0; i < nf; i++) Py_XDECREF(slots[i].obj);
}

#define STACK_SLOTS 48

/* The present fields (sparse) or all fields (generated) of a message into d. 0 on bail/error. */
static int msg_fill(PyObject *spec, const char *p, Py_ssize_t n, PyObject *d, int depth) {
    if (depth > MAX_DEPTH) return 0;
    PyObject *fields = PyList_GET_ITEM(spec, G_FIELDS);
    PyObject *order = PyList_GET_ITEM(spec, G_ORDER);
    int sparse = PyList_GET_ITEM(spec, G_SPARSE) == Py_True;
    Py_ssize_t nf = PyTuple_GET_SIZE(fields);
    Slot stack[STACK_SLOTS];
    Slot *slots = nf <= STACK_SLOTS ? stack : PyMem_Calloc((size_t)nf, sizeof(Slot));
    if (!slots) return 0;
    memset(slots, 0, sizeof(Slot) * (size_t)nf);
    int ok = parse_slots(spec, p, n, slots, nf, depth);
    const unsigned char *ord = (const unsigned char *)PyBytes_AS_STRING(order);
    const unsigned char *types = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_TYPES));
    const unsigned char *modes = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_MODES));
    for (Py_ssize_t j = 0; ok && j < PyBytes_GET_SIZE(order); j++) {
        Py_ssize_t i = ord[j];
        if (sparse && !slots[i].present) continue;
        if (emit(d, PyTuple_GET_ITEM(fields, i), &slots[i], modes[i], types[i], depth) < 0) ok = 0;
    }
    free_slots(slots, nf);
    if (slots != stack) PyMem_Free(slots);
    return ok;
}

/* metav1.Time / MicroTime text in C for years 1-9999 (what _gotime writes; Python for the rest):
 * a Pod has a dozen timestamps, and a call into Python per timestamp cost ~0.4 us. */
#define GO_ZERO_SECONDS (-62135596800LL)

/* The text into buf (40 bytes); its length, or -1 outside years 1-9999 (not handled here). */
static int format_rfc3339_buf(char *buf, long long seconds, long micros) {
    /* days since 1970-01-01 -> civil date (H. Hinnant's algorithm) */
    long long days = seconds / 86400, rem = seconds % 86400;
    if (rem < 0) { rem += 86400; days -= 1; }
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = yoe + era * 400;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    long long d = doy - (153 * mp + 2) / 5 + 1;
    long long m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) y += 1;
    if (y < 1 || y > 9999) return -1;
    /* YYYY-MM-DDTHH:MM:SS[.ffffff]Z, by hand: snprintf cost more than the rest of a Time */
    long long parts[6] = {y, m, d, rem / 3600, rem / 60 % 60, rem % 60};
    static const char seps[] = "--T::";
    char *o = buf;
    for (int i = 0; i < 6; i++) {
        long long x = parts[i];
        if (i == 0) {
            *o++ = (char)('0' + x / 1000);
            *o++ = (char)('0' + x / 100 % 10);
        }
        *o++ = (char)('0' + x / 10 % 10);
        *o++ = (char)('0' + x % 10);
        if (i < 5) *o++ = seps[i];
    }
    if (micros >= 0) {
        *o++ = '.';
        for (long div = 100000; div; div /= 10) *o++ = (char)('0' + micros / div % 10);
    }
    *o++ = 'Z';
    return (int)(o - buf);
}

static PyObject *format_rfc3339(long long seconds, long micros) {
    char buf[40];
    int n = format_rfc3339_buf(buf, seconds, micros);
    if (n < 0) return NULL;  /* not handled here */
    return PyUnicode_FromStringAndSize(buf, n);
}

/* The one wire type each field of a special type has; -1: not one of its fields (upb: unknown). */
static int special_wire_type(int special, uint64_t number) {
    switch (special) {
    case S_TIME: case S_MICROTIME: return (number == 1 || number == 2) ? 0 : -1;
    case S_DURATION: return number == 1 ? 0 : -1;
    case S_INTORSTRING: return (number == 1 || number == 2) ? 0 : (number == 3 ? 2 : -1);
    default: return number == 1 ? 2 : -1;  /* quantity, raw extension, FieldsV1, string list */
    }
}

/* The value of a special type from its wire bytes. */
static PyObject *special_value(int special, const char *p, Py_ssize_t n) {
    const char *end = p + n;
    int64_t i1 = 0, i2 = 0;
    int has1 = 0, has2 = 0, has3 = 0;
    const char *sp = NULL;
    Py_ssize_t sn = 0;
    PyObject *list = NULL;
    if (special == S_STRINGLIST && !(list = PyList_New(0))) return NULL;
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag)) goto bail;
        int number = (int)(tag >> 3), wt = (int)(tag & 7);
        if (wt != special_wire_type(special, (uint64_t)number)) goto bail;
        if (wt == 0) {
            if (!read_varint(&p, end, &v)) goto bail;
            if (number == 1) { i1 = (int64_t)v; has1 = 1; }
            else { i2 = (int64_t)(int32_t)v; has2 = 1; }
        } else {
            uint64_t len;
            if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) goto bail;
            if (special == S_STRINGLIST) {
                PyObject *s = PyUnicode_DecodeUTF8(p, (Py_ssize_t)len, NULL);
                if (!s || PyList_Append(list, s) < 0) { Py_XDECREF(s); goto bail; }
                Py_DECREF(s);
            } else {
                sp = p;
                sn = (Py_ssize_t)len;
                if (number == 1) has1 = 1; else has3 = 1;
            }
            p += len;
        }
    }
    (void)has3;
    switch (special) {
    case S_TIME:
        if (i1 || has1 || has2) {
            if (i1 != GO_ZERO_SECONDS && i1 > GO_ZERO_SECONDS && i1 < 253402300800LL) {
                PyObject *t = format_rfc3339((long long)i1, -1);
                if (t) return t;
            }
            return PyObject_CallFunction(fmt_time, "L", (long long)i1);
        }
        Py_RETURN_NONE;
    case S_MICROTIME:
        if (i1 || has1 || has2) {
            if (i1 > GO_ZERO_SECONDS && i1 < 253402300800LL && i2 >= 0 && i2 < 1000000000) {
                PyObject *t = format_rfc3339((long long)i1, (long)(i2 / 1000));
                if (t) return t;
            }
            return PyObject_CallFunction(fmt_micro, "LL", (long long)i1, (long long)i2);
        }
        Py_RETURN_NONE;
    case S_DURATION:
        return PyObject_CallFunction(fmt_duration, "L", (long long)i1);
    case S_QUANTITY:
        if (sp && sn) return PyUnicode_DecodeUTF8(sp, sn, NULL);
        Py_INCREF(str_zero);
        return str_zero;
    case S_INTORSTRING:
        if (i1 == 0) return PyLong_FromLongLong((long long)(int32_t)i2);
        if (i1 == 1) {
            if (sp) return PyUnicode_DecodeUTF8(sp, sn, NULL);
            Py_INCREF(empty_str);
            return empty_str;
        }
        return BAIL;  /* an impossible type: Python raises */
    case S_RAWEXT:
    case S_FIELDSV1: {
        if (!has1) Py_RETURN_NONE;
        PyObject *b = PyBytes_FromStringAndSize(sp, sn);
        if (!b) return NULL;
        PyObject *r = PyObject_CallOneArg(embedded, b);
        Py_DECREF(b);
        return r;
    }
    case S_STRINGLIST:
        return list;
    }
bail:
    Py_XDECREF(list);
    return BAIL;
}

/* The JSON value of a message: a special's value, or a new dict. NULL on bail/error. */
static PyObject *msg_value(PyObject *spec, const char *p, Py_ssize_t n, int depth) {
    if (depth > MAX_DEPTH) return BAIL;
    int special = (int)PyLong_AsLong(PyList_GET_ITEM(spec, G_SPECIAL));
    if (special) return special_value(special, p, n);
    PyObject *st = PyList_GET_ITEM(spec, G_STATIC);
    PyObject *d = st == Py_None ? PyDict_New() : PyDict_Copy(st);
    if (!d) return NULL;
    if (!msg_fill(spec, p, n, d, depth)) { Py_DECREF(d); return NULL; }
    PyObject *dyn = PyList_GET_ITEM(spec, G_DYN);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(dyn); j++) {
        PyObject *pair = PyTuple_GET_ITEM(dyn, j);
        PyObject *k = PyTuple_GET_ITEM(pair, 0);
        int has = PyDict_Contains(d, k);
        if (has < 0 || (!has && set_item(d, k, clone_zero(PyTuple_GET_ITEM(pair, 1))) < 0)) { Py_DECREF(d); return NULL; }
    }
    PyObject *reorder = PyList_GET_ITEM(spec, G_REORDER);
    if (reorder != Py_None) {
        PyObject *r = PyDict_New();
        if (!r) { Py_DECREF(d); return NULL; }
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(reorder); j++) {
            PyObject *k = PyTuple_GET_ITEM(reorder, j);
            PyObject *v = PyDict_GetItemWithError(d, k);
            if ((!v && PyErr_Occurred()) || (v && PyDict_SetItem(r, k, v) < 0)) {
                Py_DECREF(r); Py_DECREF(d); return NULL;
            }
        }
        Py_DECREF(d);
        d = r;
    }
    return d;
}

/* 1: a field the schema does not know (or a wire type it does not expect) somewhere in the message;
 * 0: none; -1: the bytes are not valid protobuf (the caller parses them and says why). */
/* Walk every known message field of the bytes: -1 when they are not valid protobuf (or too deep, or
 * a group: upb decides), else 0, with *found set when a field the schema does not know (or a wire
 * type it does not expect) is met, at any depth. The whole value is always walked, so 0 also says
 * the structure is sound (lengths, varints) everywhere a parse would look. */
static int skip_field(const char **pp, const char *end, int wt) {
    uint64_t v, len;
    switch (wt) {
    case 0: return read_varint(pp, end, &v);
    case 1: if (end - *pp < 8) return 0; *pp += 8; return 1;
    case 5: if (end - *pp < 4) return 0; *pp += 4; return 1;
    case 2:
        if (!read_varint(pp, end, &len) || len > (uint64_t)(end - *pp)) return 0;
        *pp += len;
        return 1;
    }
    return 0;  /* groups (3, 4) and invalid types */
}

static int unknown_in(PyObject *spec, const char *p, Py_ssize_t n, int depth, int *found) {
    if (depth > MAX_DEPTH) return -1;
    int special = (int)PyLong_AsLong(PyList_GET_ITEM(spec, G_SPECIAL));
    PyObject *lookup = PyList_GET_ITEM(spec, G_LOOKUP);
    PyObject *fields = PyList_GET_ITEM(spec, G_FIELDS);
    const unsigned char *lk = (const unsigned char *)PyBytes_AS_STRING(lookup);
    Py_ssize_t lk_n = PyBytes_GET_SIZE(lookup);
    const char *end = p + n;
    while (p < end) {
        uint64_t tag, len;
        if (!read_varint(&p, end, &tag)) return -1;
        uint64_t number = tag >> 3;
        int wt = (int)(tag & 7), want = -1, type = 0, label = L_OPT;
        PyObject *sub = NULL;
        if (number == 0) return -1;
        if (special) {
            want = special_wire_type(special, number);
        } else if (number < (uint64_t)lk_n && lk[number]) {
            Py_ssize_t i = lk[number] - 1;
            type = PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_TYPES))[i];
            label = PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_LABELS))[i];
            sub = PyTuple_GET_ITEM(PyTuple_GET_ITEM(fields, i), F_SUB);
            want = label == L_MAP ? 2 : wire_type_of(type);
            if (label == L_REP && wt == 2 && want != 2) want = 2;  /* packed numbers: known */
        }
        if (want < 0 || wt != want) {  /* unknown */
            *found = 1;
            if (!skip_field(&p, end, wt)) return -1;
            continue;
        }
        if (wt != 2 || !(label == L_MAP || (type == T_MSG && !special))) {
            if (!skip_field(&p, end, wt)) return -1;
            continue;
        }
        if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return -1;
        if (label == L_MAP) {
            /* an entry: key 1 (string), value 2 of the field's type */
            const char *q = p, *qe = p + len;
            while (q < qe) {
                uint64_t t2, l2;
                if (!read_varint(&q, qe, &t2)) return -1;
                int n2 = (int)(t2 >> 3), w2 = (int)(t2 & 7);
                if (n2 == 2 && w2 == 2 && type == T_MSG) {
                    if (!read_varint(&q, qe, &l2) || l2 > (uint64_t)(qe - q)) return -1;
                    if (unknown_in(sub, q, (Py_ssize_t)l2, depth + 1, found) < 0) return -1;
                    q += l2;
                    continue;
                }
                if (!((n2 == 1 && w2 == 2) || (n2 == 2 && w2 == wire_type_of(type)))) *found = 1;
                if (!skip_field(&q, qe, w2)) return -1;
            }
        } else if (unknown_in(sub, p, (Py_ssize_t)len, depth + 1, found) < 0) {
            return -1;
        }
        p += len;
    }
    return 0;
}

/* has_unknown(spec, raw) -> True/False, or None when the bytes are not valid protobuf. */
static PyObject *py_has_unknown(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "has_unknown(spec, raw: bytes)");
        return NULL;
    }
    int found = 0;
    int r = unknown_in(args[0], PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]), 0, &found);
    if (PyErr_Occurred()) return NULL;
    if (r < 0) Py_RETURN_NONE;
    return PyBool_FromLong(found);
}

/* --- redaction on the wire bytes (see _fast.redact_raw) ---
 * trie: {field number: (what, child)}; what: 0 a message field (once), 1 a repeated message
 * field, 2 a string leaf, 3 a bytes leaf; child: the trie of the message (0, 1) or None.
 * Fields the trie does not name are copied byte for byte; a changed field is written again
 * with its new length. Anything unusual (a wire type the trie does not expect, a message
 * field or leaf met twice, invalid UTF-8, fn returning something else than str/bytes):
 * bail, and the upb path decides. */

/* The output of redact_msg: a bytes object used as a buffer (len bytes written of its size),
 * grown by doubling, cut to len at the end: one allocation for most messages, where resizing
 * on every write copied the bytes written so far again and again. */
typedef struct {
    PyObject *b;
    Py_ssize_t len;
} WireBuf;

static int put_bytes(WireBuf *out, const char *p, Py_ssize_t n) {
    if (n == 0) return 0;
    Py_ssize_t cap = PyBytes_GET_SIZE(out->b);
    if (out->len + n > cap) {
        Py_ssize_t want = cap * 2 > out->len + n ? cap * 2 : out->len + n;
        if (_PyBytes_Resize(&out->b, want) < 0) return -1;  /* out->b is NULL then */
    }
    memcpy(PyBytes_AS_STRING(out->b) + out->len, p, (size_t)n);
    out->len += n;
    return 0;
}

static int put_varint(WireBuf *out, uint64_t v) {
    char buf[10];
    int n = 0;
    while (v >= 0x80) { buf[n++] = (char)(v | 0x80); v >>= 7; }
    buf[n++] = (char)v;
    return put_bytes(out, buf, n);
}

/* Replace inlined (``codec.Replace``): every non-empty leaf becomes a constant, written here
 * without calling fn; ``delta`` adds up what fn's own calls would have added (characters for a
 * string, bytes for bytes). */
typedef struct {
    const char *text;     /* the constant's UTF-8, for string leaves */
    Py_ssize_t text_n, text_chars;
    const char *data;     /* for bytes leaves */
    Py_ssize_t data_n;
    Py_ssize_t delta;
} Inline;

/* The new bytes of a message (a new reference), Py_None when nothing changed, NULL on bail/error. */
static PyObject *redact_msg(PyObject *trie, const char *p, Py_ssize_t n, PyObject *fn, Py_ssize_t *count,
                            PyObject **fn_error, int depth, Inline *inl) {
    if (depth > MAX_DEPTH) return BAIL;
    const char *start = p, *end = p + n, *copied = p;
    WireBuf out = {NULL, 0};
    uint64_t seen = 0;
    while (p < end && !*fn_error) {
        const char *tag_at = p;
        uint64_t tag, len, v;
        if (!read_varint(&p, end, &tag)) goto bail;
        uint64_t number = tag >> 3;
        int wt = (int)(tag & 7);
        PyObject *key = PyLong_FromUnsignedLongLong(number);
        if (!key) goto bail;
        PyObject *entry = PyDict_GetItemWithError(trie, key);
        Py_DECREF(key);
        if (!entry) {
            if (PyErr_Occurred()) goto bail;
            /* not on a path: skip it */
            if (wt == 0) { if (!read_varint(&p, end, &v)) goto bail; }
            else if (wt == 1) { if (end - p < 8) goto bail; p += 8; }
            else if (wt == 5) { if (end - p < 4) goto bail; p += 4; }
            else if (wt == 2) {
                if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) goto bail;
                p += len;
            } else goto bail;
            continue;
        }
        if (wt != 2 || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) goto bail;
        if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) goto bail;
        const char *vp = p;
        p += len;
        long what = PyLong_AsLong(PyTuple_GET_ITEM(entry, 0));
        if (what != 1) {  /* once only: protobuf keeps the last (or merges): upb decides */
            if (number >= 64 || (seen >> number) & 1) goto bail;
            seen |= (uint64_t)1 << number;
        }
        PyObject *replacement = NULL;  /* the field's new value bytes, when changed */
        const char *rp = NULL;  /* or the constant's (inlined Replace) */
        Py_ssize_t rn = 0;
        if (what == 0 || what == 1) {
            PyObject *r = redact_msg(PyTuple_GET_ITEM(entry, 1), vp, (Py_ssize_t)len, fn, count, fn_error,
                                     depth + 1, inl);
            if (!r) goto bail;
            if (r == Py_None) { Py_DECREF(r); continue; }
            replacement = r;
        } else if ((what == 2 || what == 3) && inl) {
            if (len == 0) continue;  /* Replace keeps an empty leaf */
            const char *c = what == 2 ? inl->text : inl->data;
            Py_ssize_t cn = what == 2 ? inl->text_n : inl->data_n;
            if (what == 2) {  /* invalid UTF-8: bail as the call would (upb decides) */
                PyObject *old = PyUnicode_DecodeUTF8(vp, (Py_ssize_t)len, NULL);
                if (!old) goto bail;
                inl->delta += inl->text_chars - PyUnicode_GET_LENGTH(old);
                Py_DECREF(old);
            } else {
                inl->delta += cn - (Py_ssize_t)len;
            }
            if ((Py_ssize_t)len == cn && memcmp(vp, c, (size_t)cn) == 0) continue;
            (*count)++;
            rp = c;
            rn = cn;
        } else if (what == 2 || what == 3) {
            PyObject *old = what == 2 ? PyUnicode_DecodeUTF8(vp, (Py_ssize_t)len, NULL)
                                      : PyBytes_FromStringAndSize(vp, (Py_ssize_t)len);
            if (!old) goto bail;
            PyObject *new = PyObject_CallOneArg(fn, old);
            if (!new) {
                /* fn failed: keep the edits made so far (as the upb walker does), stop, and raise */
                Py_DECREF(old);
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                if (tb) PyException_SetTraceback(value, tb);
                Py_XDECREF(type);
                Py_XDECREF(tb);
                *fn_error = value;
                p = tag_at;  /* this field stays as it was */
                break;
            }
            if (what == 2 && PyBytes_Check(new)) {  /* as _coerce: bytes for a string field */
                PyObject *t = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(new), PyBytes_GET_SIZE(new), "replace");
                Py_DECREF(new);
                new = t;
            } else if (what == 3 && PyUnicode_Check(new)) {
                PyObject *t = PyUnicode_AsUTF8String(new);
                Py_DECREF(new);
                new = t;
            }
            if (!new || !(what == 2 ? PyUnicode_CheckExact(new) : PyBytes_CheckExact(new))) {
                Py_XDECREF(new); Py_DECREF(old); goto bail;
            }
            int same = PyObject_RichCompareBool(new, old, Py_EQ);
            Py_DECREF(old);
            if (same < 0) { Py_DECREF(new); goto bail; }
            if (same) { Py_DECREF(new); continue; }
            (*count)++;
            if (what == 2) {
                replacement = PyUnicode_AsUTF8String(new);
                Py_DECREF(new);
                if (!replacement) goto bail;
            } else {
                replacement = new;
            }
        } else {
            goto bail;
        }
        /* write what came before, then the field with its new value */
        if (replacement) {
            rp = PyBytes_AS_STRING(replacement);
            rn = PyBytes_GET_SIZE(replacement);
        }
        if (!out.b && !(out.b = PyBytes_FromStringAndSize(NULL, n + 64))) { Py_XDECREF(replacement); goto bail; }
        if (put_bytes(&out, copied, tag_at - copied) < 0 || put_varint(&out, tag) < 0
            || put_varint(&out, (uint64_t)rn) < 0 || put_bytes(&out, rp, rn) < 0) {
            Py_XDECREF(replacement); goto bail;
        }
        Py_XDECREF(replacement);
        copied = p;
    }
    (void)start;
    if (!out.b) Py_RETURN_NONE;
    if (put_bytes(&out, copied, end - copied) < 0 || _PyBytes_Resize(&out.b, out.len) < 0) goto bail;
    return out.b;
bail:
    Py_XDECREF(out.b);
    return BAIL;
}

/* redact(trie, raw, fn[, text, data]) -> (new raw bytes or None when unchanged, leaves changed, fn's
 * error), or None: upb decides. With text (str) and data (bytes), fn is a codec.Replace of them: the
 * leaves are replaced here, and what the calls would have added to fn.delta is added to it. */
static PyObject *py_redact(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if ((nargs != 3 && nargs != 5) || !PyDict_Check(args[0]) || !PyBytes_Check(args[1])
        || (nargs == 5 && (!PyUnicode_Check(args[3]) || !PyBytes_Check(args[4])))) {
        PyErr_SetString(PyExc_TypeError, "redact(trie, raw: bytes, fn[, text: str, data: bytes])");
        return NULL;
    }
    Inline inl, *inlp = NULL;
    if (nargs == 5) {
        inl.text = PyUnicode_AsUTF8AndSize(args[3], &inl.text_n);
        if (!inl.text) return NULL;
        inl.text_chars = PyUnicode_GET_LENGTH(args[3]);
        inl.data = PyBytes_AS_STRING(args[4]);
        inl.data_n = PyBytes_GET_SIZE(args[4]);
        inl.delta = 0;
        inlp = &inl;
    }
    Py_ssize_t count = 0;
    PyObject *fn_error = NULL;
    PyObject *r = redact_msg(args[0], PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]), args[2], &count,
                             &fn_error, 0, inlp);
    if (!r) {
        PyErr_Clear();
        Py_XDECREF(fn_error);
        Py_RETURN_NONE;
    }
    if (inlp && inl.delta) {  /* as the calls would have: fn.delta += ... */
        PyObject *d = PyObject_GetAttrString(args[2], "delta");
        PyObject *add = d ? PyLong_FromSsize_t(inl.delta) : NULL;
        PyObject *sum = add ? PyNumber_Add(d, add) : NULL;
        Py_XDECREF(d);
        Py_XDECREF(add);
        if (!sum || PyObject_SetAttrString(args[2], "delta", sum) < 0) {
            Py_XDECREF(sum); Py_DECREF(r); return NULL;
        }
        Py_DECREF(sum);
    }
    return Py_BuildValue("(NnN)", r, count, fn_error ? fn_error : Py_NewRef(Py_None));
}

/* decode(spec, raw, kind, api_version, fill) -> dict, or None when Python must decide. */
static PyObject *py_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "decode(spec, raw: bytes, kind, api_version, fill)");
        return NULL;
    }
    PyObject *spec = args[0];
    const char *p = PyBytes_AS_STRING(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[1]);
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    if (PyDict_SetItemString(d, "kind", args[2]) < 0 || PyDict_SetItemString(d, "apiVersion", args[3]) < 0)
        goto fail;
    if (PyObject_IsTrue(args[4])) {
        if (!msg_fill(spec, p, n, d, 0)) goto fail;
    } else {
        PyObject *body = msg_value(spec, p, n, 0);
        if (!body) goto fail;
        int r = PyDict_Update(d, body);
        Py_DECREF(body);
        if (r < 0) goto fail;
    }
    return d;
fail:
    Py_DECREF(d);
    PyErr_Clear();  /* any error or bail: the pure-Python path decides */
    Py_RETURN_NONE;
}

/* ======================================================================================
 * The JSON emitter: wire bytes -> the JSON text of the object, with no dict in between.
 *
 * json(spec, raw, kind, api_version, fill, resource_version, head) writes exactly
 * jsonout.dumps(decode(...)) (json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
 * UTF-8) from the same tables, by the same rules as msg_fill/msg_value above: a dict's
 * keys come out in the order the dict would hold them. Each "key":value is written as it
 * comes and remembered (Ent); when the final order differs from the written one (a static
 * default overwritten, a reorder, an unsorted map, a key set twice) the dict's text is
 * put back in order by copying. Bails (None) where the decoder bails, and also on a
 * scalar or map-entry field met twice on the wire, floats in the schema (there are none),
 * non-finite floats and unusual types in embedded JSON: the caller then takes the
 * dict path. Depth as in the decoder.
 * ====================================================================================== */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
} JBuf;

static int buf_reserve(JBuf *b, Py_ssize_t more) {
    if (b->cap - b->n >= more) return 1;
    if (more > PY_SSIZE_T_MAX / 4 - b->n) { PyErr_NoMemory(); return 0; }
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap - b->n < more) cap *= 2;
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (!p) { PyErr_NoMemory(); return 0; }
    b->p = p;
    b->cap = cap;
    return 1;
}

static int put(JBuf *b, const char *s, Py_ssize_t n) {
    if (!buf_reserve(b, n)) return 0;
    memcpy(b->p + b->n, s, (size_t)n);
    b->n += n;
    return 1;
}

static int put1(JBuf *b, char c) {
    if (!buf_reserve(b, 1)) return 0;
    b->p[b->n++] = c;
    return 1;
}

#define PUTS(b, lit) put((b), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* What json.dumps escapes (ensure_ascii=False): '"', '\\' and the controls; 'u': \u00XX. */
static const char ESC[128] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
};
static const char HEX[] = "0123456789abcdef";

/* A JSON string from UTF-8 bytes. 0: invalid UTF-8 (as PyUnicode_DecodeUTF8 refuses it:
 * overlongs, surrogates, > U+10FFFF) or no memory. */
static int put_str(JBuf *b, const char *src, Py_ssize_t n) {
    if (n > (PY_SSIZE_T_MAX / 4 - 2) / 6 || !buf_reserve(b, n * 6 + 2)) return 0;
    const unsigned char *s = (const unsigned char *)src, *e = s + n;
    char *o = b->p + b->n;
    *o++ = '"';
    while (s < e) {
        /* 8 bytes at a time while none needs a look: no control, quote, backslash or non-ASCII */
        while (e - s >= 8) {
            uint64_t x;
            memcpy(&x, s, 8);
            const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
            uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
            if (((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high) != 0) break;
            memcpy(o, s, 8);
            o += 8;
            s += 8;
        }
        if (s >= e) break;
        unsigned char c = *s;
        if (c < 0x80) {
            char x = ESC[c];
            s++;
            if (!x) { *o++ = (char)c; continue; }
            *o++ = '\\';
            if (x == 'u') {
                *o++ = 'u'; *o++ = '0'; *o++ = '0'; *o++ = HEX[c >> 4]; *o++ = HEX[c & 15];
            } else {
                *o++ = x;
            }
            continue;
        }
        int len;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) len = 3;
        else if (c >= 0xF0 && c <= 0xF4) len = 4;
        else return 0;
        if (e - s < len) return 0;
        unsigned char c1 = s[1];
        if ((c1 & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90)
            || (c == 0xF4 && c1 > 0x8F))
            return 0;
        if (len >= 3 && (s[2] & 0xC0) != 0x80) return 0;
        if (len == 4 && (s[3] & 0xC0) != 0x80) return 0;
        memcpy(o, s, (size_t)len);
        o += len;
        s += len;
    }
    *o++ = '"';
    b->n = o - b->p;
    return 1;
}

/* A str's UTF-8 (ASCII ones without a call: the tables' keys). NULL on a lone surrogate. */
static inline const char *utf8_of(PyObject *s, Py_ssize_t *n) {
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        *n = PyUnicode_GET_LENGTH(s);
        return (const char *)PyUnicode_DATA(s);
    }
    return PyUnicode_AsUTF8AndSize(s, n);
}

/* A str object as a JSON string. 0 on a lone surrogate (not UTF-8: jsonout escapes the whole value). */
static int put_pystr(JBuf *b, PyObject *s) {
    Py_ssize_t n;
    const char *u = utf8_of(s, &n);
    return u && put_str(b, u, n);
}

static int put_u64(JBuf *b, uint64_t v, int negative) {
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    if (negative) tmp[--i] = '-';
    return put(b, tmp + i, 24 - i);
}

static int put_i64(JBuf *b, int64_t v) {
    return v < 0 ? put_u64(b, (uint64_t)0 - (uint64_t)v, 1) : put_u64(b, (uint64_t)v, 0);
}

static int put_b64(JBuf *b, const char *src, Py_ssize_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n > PY_SSIZE_T_MAX / 8 || !buf_reserve(b, (n + 2) / 3 * 4 + 2)) return 0;
    const unsigned char *s = (const unsigned char *)src;
    char *o = b->p + b->n;
    *o++ = '"';
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = A[x >> 18]; *o++ = A[(x >> 12) & 63]; *o++ = A[(x >> 6) & 63]; *o++ = A[x & 63];
    }
    if (n - i == 1) {
        uint32_t x = (uint32_t)s[i] << 16;
        *o++ = A[x >> 18]; *o++ = A[(x >> 12) & 63]; *o++ = '='; *o++ = '=';
    } else if (n - i == 2) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = A[x >> 18]; *o++ = A[(x >> 12) & 63]; *o++ = A[(x >> 6) & 63]; *o++ = '=';
    }
    *o++ = '"';
    b->n = o - b->p;
    return 1;
}

/* Any JSON-shaped Python value (embedded JSON, the tables' defaults, the head) as jsonout writes it.
 * 0: a type jsonout would treat otherwise (subclasses, tuples, non-str keys, NaN...), or an error. */
static int put_obj(JBuf *b, PyObject *v, int depth) {
    if (depth > MAX_DEPTH) return 0;
    if (v == Py_None) return PUTS(b, "null");
    if (v == Py_True) return PUTS(b, "true");
    if (v == Py_False) return PUTS(b, "false");
    if (PyUnicode_CheckExact(v)) return put_pystr(b, v);
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow) return (x != -1 || !PyErr_Occurred()) && put_i64(b, (int64_t)x);
        PyObject *s = PyObject_Str(v);  /* beyond 64 bits: int's own text, as json.dumps writes */
        if (!s) return 0;
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(s, &n);
        int ok = u && put(b, u, n);
        Py_DECREF(s);
        return ok;
    }
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        if (!isfinite(x)) return 0;  /* jsonout's documented null: the dict path writes it */
        char *r = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (!r) return 0;
        int ok = put(b, r, (Py_ssize_t)strlen(r));
        PyMem_Free(r);
        return ok;
    }
    if (PyDict_CheckExact(v)) {
        PyObject *k, *x;
        Py_ssize_t pos = 0;
        int first = 1;
        if (!put1(b, '{')) return 0;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!PyUnicode_CheckExact(k)) return 0;
            if ((!first && !put1(b, ',')) || !put_pystr(b, k) || !put1(b, ':') || !put_obj(b, x, depth + 1)) return 0;
            first = 0;
        }
        return put1(b, '}');
    }
    if (PyList_CheckExact(v)) {
        if (!put1(b, '[')) return 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            if ((i && !put1(b, ',')) || !put_obj(b, PyList_GET_ITEM(v, i), depth + 1)) return 0;
        }
        return put1(b, ']');
    }
    return 0;
}

/* One "key":value of a dict being written: the key's UTF-8 and where its text is in the buffer
 * (the comma before it excluded). */
typedef struct {
    const char *k;
    Py_ssize_t kn;
    Py_ssize_t start, end;
} Ent;

#define STACK_ENTS 32

/* A dict being written: its text starts at base (after the brace). rv: in the object's own dict,
 * the resourceVersion its "metadata" gets (Entry._decode's override), else NULL. */
typedef struct {
    Ent *e;
    Py_ssize_t n, cap, base;
    const char *rv;
    Py_ssize_t rvn;
    int may_dup;  /* a key may be set twice (static defaults, inline structs): look before appending */
    Ent st[STACK_ENTS];
} Ctx;

static void ctx_init(Ctx *c, Py_ssize_t base, const char *rv, Py_ssize_t rvn) {
    c->e = c->st;
    c->n = 0;
    c->cap = STACK_ENTS;
    c->base = base;
    c->rv = rv;
    c->rvn = rvn;
    c->may_dup = 0;
}

static void ctx_free(Ctx *c) {
    if (c->e != c->st) PyMem_Free(c->e);
}

static int ctx_append(Ctx *c, const char *k, Py_ssize_t kn, Py_ssize_t start, Py_ssize_t end) {
    if (c->n == c->cap) {
        if (c->cap > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(Ent) / 2) { PyErr_NoMemory(); return 0; }
        Ent *e = PyMem_Malloc(sizeof(Ent) * (size_t)c->cap * 2);
        if (!e) { PyErr_NoMemory(); return 0; }
        memcpy(e, c->e, sizeof(Ent) * (size_t)c->n);
        if (c->e != c->st) PyMem_Free(c->e);
        c->e = e;
        c->cap *= 2;
    }
    Ent *x = &c->e[c->n++];
    x->k = k;
    x->kn = kn;
    x->start = start;
    x->end = end;
    return 1;
}

static Py_ssize_t ctx_find(Ctx *c, const char *k, Py_ssize_t kn) {
    for (Py_ssize_t i = 0; i < c->n; i++)
        if (c->e[i].kn == kn && (c->e[i].k == k || memcmp(c->e[i].k, k, (size_t)kn) == 0)) return i;
    return -1;
}

/* d[k] = the fragment: a key set again keeps its place (as in a dict) with the new text. */
static int ctx_set(Ctx *c, const char *k, Py_ssize_t kn, Py_ssize_t start, Py_ssize_t end) {
    Py_ssize_t i = ctx_find(c, k, kn);
    if (i < 0) return ctx_append(c, k, kn, start, end);
    c->e[i].start = start;
    c->e[i].end = end;
    return 1;
}

/* Start writing "key": in c; *at: where to cut to take it back (its comma included). */
static int frag_open(Ctx *c, JBuf *b, const char *k, Py_ssize_t kn, Py_ssize_t *at, Py_ssize_t *start) {
    *at = b->n;
    if (b->n > c->base && !put1(b, ',')) return 0;
    *start = b->n;
    return put_str(b, k, kn) && put1(b, ':');
}

/* Make the dict's text hold c's entries, in c's order, comma-separated (the common case: it does already). */
static int ctx_finish(Ctx *c, JBuf *b) {
    Py_ssize_t expect = c->base;
    int seq = 1;
    for (Py_ssize_t j = 0; j < c->n && seq; j++) {
        if (c->e[j].start != expect + (j > 0)) seq = 0;
        expect = c->e[j].end;
    }
    if (seq && expect == b->n) return 1;
    Py_ssize_t len = b->n - c->base;
    char *tmp = PyMem_Malloc(len ? (size_t)len : 1);
    if (!tmp) { PyErr_NoMemory(); return 0; }
    memcpy(tmp, b->p + c->base, (size_t)len);
    b->n = c->base;
    for (Py_ssize_t j = 0; j < c->n; j++) {
        Ent *e = &c->e[j];
        Py_ssize_t l = e->end - e->start;
        if (!buf_reserve(b, l + 1)) { PyMem_Free(tmp); return 0; }
        if (j) b->p[b->n++] = ',';
        memcpy(b->p + b->n, tmp + (e->start - c->base), (size_t)l);
        e->start = b->n;
        b->n += l;
        e->end = b->n;
    }
    PyMem_Free(tmp);
    return 1;
}

/* --- embedded JSON (RawExtension, FieldsV1) re-dumped in C ---
 * The dict path writes json.loads(raw) again through jsonout: compact, strings re-escaped,
 * numbers as Python reads and writes them. This writes the same text straight from raw, or
 * says it cannot (0, the buffer as it was): a duplicate key (json.loads keeps the last value in
 * the first place), NaN/Infinity, a float that overflows, a lone surrogate, invalid UTF-8,
 * anything json.loads refuses, deeper than MAX_DEPTH, integers too long for int(): the caller
 * then asks Python. */

typedef struct {
    const char *p, *end;
    JBuf *b;
} JScan;

static void js_ws(JScan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string at s->p (the opening quote) written as json.dumps writes the str it stands for. */
static int js_string(JScan *s) {
    const char *q = ++s->p;
    while (q < s->end && *q != '"' && *q != '\\') {
        if ((unsigned char)*q < 0x20) return 0;  /* json.loads refuses raw control characters */
        q++;
    }
    if (q >= s->end) return 0;
    if (*q == '"') {  /* no escape: the bytes as they are, checked and escaped */
        int ok = put_str(s->b, s->p, q - s->p);
        s->p = q + 1;
        return ok;
    }
    /* escapes: decode into UTF-8 first */
    JBuf t = {NULL, 0, 0};
    q = s->p;
    while (1) {
        const char *r = q;
        while (q < s->end && *q != '"' && *q != '\\') {
            if ((unsigned char)*q < 0x20) goto fail;
            q++;
        }
        if (q >= s->end || !put(&t, r, q - r)) goto fail;
        if (*q == '"') break;
        if (s->end - q < 2) goto fail;
        char e = q[1];
        q += 2;
        char c;
        switch (e) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            uint32_t u, lo;
            if (s->end - q < 4 || !hex4(q, &u)) goto fail;
            q += 4;
            if (u >= 0xDC00 && u <= 0xDFFF) goto fail;  /* a lone low surrogate */
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (s->end - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(q + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    goto fail;  /* a lone high surrogate */
                q += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            char o[4];
            int n;
            if (u < 0x80) { o[0] = (char)u; n = 1; }
            else if (u < 0x800) { o[0] = (char)(0xC0 | u >> 6); o[1] = (char)(0x80 | (u & 63)); n = 2; }
            else if (u < 0x10000) {
                o[0] = (char)(0xE0 | u >> 12); o[1] = (char)(0x80 | ((u >> 6) & 63)); o[2] = (char)(0x80 | (u & 63)); n = 3;
            } else {
                o[0] = (char)(0xF0 | u >> 18); o[1] = (char)(0x80 | ((u >> 12) & 63));
                o[2] = (char)(0x80 | ((u >> 6) & 63)); o[3] = (char)(0x80 | (u & 63)); n = 4;
            }
            if (!put(&t, o, n)) goto fail;
            continue;
        }
        default: goto fail;
        }
        if (!put1(&t, c)) goto fail;
    }
    s->p = q + 1;
    int ok = put_str(s->b, t.p ? t.p : "", t.n);
    PyMem_Free(t.p);
    return ok;
fail:
    PyMem_Free(t.p);
    return 0;
}

static int js_digits(JScan *s) {
    const char *q = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    return s->p > q;
}

/* A number: an integer's digits as int() reads and str() writes them, a float as float() and repr(). */
static int js_number(JScan *s) {
    const char *start = s->p;
    int minus = 0, is_float = 0;
    if (*s->p == '-') { minus = 1; s->p++; }
    if (s->p >= s->end) return 0;
    if (*s->p == '0') s->p++;
    else if (!js_digits(s)) return 0;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!js_digits(s)) return 0;
        is_float = 1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!js_digits(s)) return 0;
        is_float = 1;
    }
    Py_ssize_t n = s->p - start;
    if (!is_float) {
        if (n > 4000) return 0;  /* int()'s digit limit: Python decides */
        const char *d = start + minus;
        if (n - minus == 1 && *d == '0') return put1(s->b, '0');  /* -0 is 0 */
        return put(s->b, start, n);
    }
    if (n > 400) return 0;
    char tmp[401];
    memcpy(tmp, start, (size_t)n);
    tmp[n] = 0;
    char *endp;
    double x = PyOS_string_to_double(tmp, &endp, NULL);
    if (x == -1.0 && PyErr_Occurred()) return 0;
    if (endp != tmp + n || !isfinite(x)) return 0;
    char *r = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!r) return 0;
    int ok = put(s->b, r, (Py_ssize_t)strlen(r));
    PyMem_Free(r);
    return ok;
}

static int key_cmp(const void *a, const void *b) {
    const Ent *x = a, *y = b;
    Py_ssize_t n = x->kn < y->kn ? x->kn : y->kn;
    int r = memcmp(x->k, y->k, (size_t)n);
    return r ? r : (x->kn > y->kn) - (x->kn < y->kn);
}

static int js_value(JScan *s, int depth);

/* An object: keys are compared as written out (the escaping is one-to-one), a duplicate bails. */
static int js_object(JScan *s, int depth) {
    Ctx keys;
    ctx_init(&keys, 0, NULL, 0);
    s->p++;
    if (!put1(s->b, '{')) return 0;
    js_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return put1(s->b, '}');
    }
    while (1) {
        js_ws(s);
        if (s->p >= s->end || *s->p != '"') goto fail;
        Py_ssize_t kstart = s->b->n;
        if (!js_string(s)) goto fail;
        /* offsets, not pointers: the buffer may move */
        if (!ctx_append(&keys, NULL, s->b->n - kstart, kstart, s->b->n)) goto fail;
        js_ws(s);
        if (s->p >= s->end || *s->p != ':' || !put1(s->b, ':')) goto fail;
        s->p++;
        js_ws(s);
        if (!js_value(s, depth + 1)) goto fail;
        js_ws(s);
        if (s->p >= s->end) goto fail;
        if (*s->p == ',') {
            s->p++;
            if (!put1(s->b, ',')) goto fail;
            continue;
        }
        if (*s->p != '}') goto fail;
        s->p++;
        break;
    }
    for (Py_ssize_t i = 0; i < keys.n; i++) keys.e[i].k = s->b->p + keys.e[i].start;
    if (keys.n <= 8) {
        for (Py_ssize_t i = 0; i < keys.n; i++)
            for (Py_ssize_t j = i + 1; j < keys.n; j++)
                if (keys.e[i].kn == keys.e[j].kn && memcmp(keys.e[i].k, keys.e[j].k, (size_t)keys.e[i].kn) == 0) goto fail;
    } else {
        qsort(keys.e, (size_t)keys.n, sizeof(Ent), key_cmp);
        for (Py_ssize_t i = 0; i + 1 < keys.n; i++)
            if (key_cmp(&keys.e[i], &keys.e[i + 1]) == 0) goto fail;
    }
    ctx_free(&keys);
    return put1(s->b, '}');
fail:
    ctx_free(&keys);
    return 0;
}

static int js_value(JScan *s, int depth) {
    if (depth > MAX_DEPTH || s->p >= s->end) return 0;
    switch (*s->p) {
    case '{':
        return js_object(s, depth);
    case '[':
        s->p++;
        if (!put1(s->b, '[')) return 0;
        js_ws(s);
        if (s->p < s->end && *s->p == ']') { s->p++; return put1(s->b, ']'); }
        while (1) {
            js_ws(s);
            if (!js_value(s, depth + 1)) return 0;
            js_ws(s);
            if (s->p >= s->end) return 0;
            if (*s->p == ',') { s->p++; if (!put1(s->b, ',')) return 0; continue; }
            if (*s->p != ']') return 0;
            s->p++;
            return put1(s->b, ']');
        }
    case '"':
        return js_string(s);
    case 't':
        if (s->end - s->p >= 4 && memcmp(s->p, "true", 4) == 0) { s->p += 4; return PUTS(s->b, "true"); }
        return 0;
    case 'f':
        if (s->end - s->p >= 5 && memcmp(s->p, "false", 5) == 0) { s->p += 5; return PUTS(s->b, "false"); }
        return 0;
    case 'n':
        if (s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0) { s->p += 4; return PUTS(s->b, "null"); }
        return 0;
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return js_number(s);
        return 0;  /* NaN, Infinity, or not JSON */
    }
}

/* raw's JSON re-dumped into b, or 0 with b as it was (and no error set). */
static int compact_json(JBuf *b, const char *p, Py_ssize_t n, int depth) {
    Py_ssize_t mark = b->n;
    JScan s = {p, p + n, b};
    js_ws(&s);
    int ok = js_value(&s, depth);
    js_ws(&s);
    if (ok && s.p == s.end) return 1;
    b->n = mark;
    PyErr_Clear();
    return 0;
}

/* Where a field was met on the wire: the last value of a singular field, the chain of a repeated one. */
typedef struct {
    const char *p;
    Py_ssize_t n;
    uint64_t v;
    Py_ssize_t next;
} Occ;

typedef struct {
    int present;
    Py_ssize_t head, tail;  /* repeated and map fields: their Occs (-1: none) */
    const char *p;
    Py_ssize_t n;
    uint64_t v;
} JSlot;

#define STACK_OCCS 32

typedef struct {
    Occ *o;
    Py_ssize_t n, cap;
    Occ st[STACK_OCCS];
} Occs;

static int occ_add(Occs *os, JSlot *s, const char *p, Py_ssize_t n, uint64_t v) {
    if (os->n == os->cap) {
        if (os->cap > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(Occ) / 2) { PyErr_NoMemory(); return 0; }
        Occ *o = PyMem_Malloc(sizeof(Occ) * (size_t)os->cap * 2);
        if (!o) { PyErr_NoMemory(); return 0; }
        memcpy(o, os->o, sizeof(Occ) * (size_t)os->n);
        if (os->o != os->st) PyMem_Free(os->o);
        os->o = o;
        os->cap *= 2;
    }
    Py_ssize_t i = os->n++;
    os->o[i].p = p;
    os->o[i].n = n;
    os->o[i].v = v;
    os->o[i].next = -1;
    if (s->tail >= 0) os->o[s->tail].next = i;
    else s->head = i;
    s->tail = i;
    s->present = 1;
    return 1;
}

static int jmsg(PyObject *spec, const char *p, Py_ssize_t n, JBuf *b, int depth, const char *rv, Py_ssize_t rvn);
static int jfill(PyObject *spec, const char *p, Py_ssize_t n, JBuf *b, Ctx *c, int depth);

/* A scalar's JSON (string, bool, integers). Floats: none in the schema: bail. */
static int jscalar(JBuf *b, int type, uint64_t v, const char *p, Py_ssize_t n) {
    switch (type) {
    case T_STRING: return put_str(b, p, n);
    case T_BOOL: return v ? PUTS(b, "true") : PUTS(b, "false");
    case T_INT32: return put_i64(b, (int64_t)(int32_t)v);
    case T_INT64: return put_i64(b, (int64_t)v);
    case T_UINT32: return put_u64(b, (uint32_t)v, 0);
    case T_UINT64: return put_u64(b, v, 0);
    }
    return 0;
}

/* As element(): a repeated element, a map value, a present optional. */
static int jelement(JBuf *b, int type, PyObject *sub, uint64_t v, const char *p, Py_ssize_t n, int depth) {
    if (type == T_MSG) return jmsg(sub, p, n, b, depth + 1, NULL, 0);
    if (type == T_BYTES) return put_b64(b, p, n);
    return jscalar(b, type, v, p, n);
}

/* As parse_slots (the same bail-outs), plus: a singular field met twice bails. */
static int jparse(PyObject *spec, const char *p, Py_ssize_t n, JSlot *slots, Py_ssize_t nf, Occs *os) {
    PyObject *lookup = PyList_GET_ITEM(spec, G_LOOKUP);
    const unsigned char *lk = (const unsigned char *)PyBytes_AS_STRING(lookup);
    const unsigned char *types = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_TYPES));
    const unsigned char *labels = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_LABELS));
    Py_ssize_t lk_n = PyBytes_GET_SIZE(lookup);
    const char *end = p + n;
    while (p < end) {
        uint64_t tag, v = 0;
        if (!read_varint(&p, end, &tag)) return 0;
        uint64_t number = tag >> 3;
        int wt = (int)(tag & 7);
        if (number >= (uint64_t)lk_n || lk[number] == 0) return 0;
        Py_ssize_t i = lk[number] - 1;
        if (i >= nf) return 0;
        int type = types[i], label = labels[i];
        int want = label == L_MAP ? 2 : wire_type_of(type);
        if (wt != want || wt == 1 || wt == 5) return 0;  /* fixed-size: floats, none in the schema */
        const char *vp = NULL;
        Py_ssize_t vn = 0;
        if (wt == 0) {
            if (!read_varint(&p, end, &v)) return 0;
        } else {
            uint64_t len;
            if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return 0;
            vp = p;
            vn = (Py_ssize_t)len;
            p += len;
        }
        JSlot *s = &slots[i];
        if (label == L_REP || label == L_MAP) {
            if (!occ_add(os, s, vp, vn, v)) return 0;
        } else {
            if (s->present) return 0;  /* protobuf merges messages, keeps the last scalar: Python decides */
            s->present = 1;
            s->p = vp;
            s->n = vn;
            s->v = v;
        }
    }
    return 1;
}

static int ent_cmp(const void *a, const void *b) {
    const Ent *x = a, *y = b;
    Py_ssize_t n = x->kn < y->kn ? x->kn : y->kn;
    int r = memcmp(x->k, y->k, (size_t)n);
    if (r) return r;
    if (x->kn != y->kn) return x->kn < y->kn ? -1 : 1;
    return x->start < y->start ? -1 : (x->start > y->start);
}

/* A map field: {key: value} sorted by key (code points: UTF-8 byte order), the last of equal keys. */
static int jmap(JBuf *b, int type, PyObject *sub, Occs *os, Py_ssize_t head, int depth) {
    if (!put1(b, '{')) return 0;
    Ctx c;
    ctx_init(&c, b->n, NULL, 0);
    int sorted = 1;
    for (Py_ssize_t i = head; i >= 0; i = os->o[i].next) {
        const char *q = os->o[i].p, *qe = q + os->o[i].n;
        const char *kp = "", *ep = "";
        Py_ssize_t kn = 0, en = 0;
        uint64_t v2 = 0;
        int has_k = 0, has_v = 0;
        while (q < qe) {
            uint64_t t2;
            if (!read_varint(&q, qe, &t2)) goto fail;
            int n2 = (int)(t2 >> 3), w2 = (int)(t2 & 7);
            if (n2 == 1 && w2 == 2 && !has_k) {
                uint64_t len;
                if (!read_varint(&q, qe, &len) || len > (uint64_t)(qe - q)) goto fail;
                kp = q;
                kn = (Py_ssize_t)len;
                q += len;
                has_k = 1;
            } else if (n2 == 2 && w2 == wire_type_of(type) && !has_v && (w2 == 0 || w2 == 2)) {
                if (w2 == 0) {
                    if (!read_varint(&q, qe, &v2)) goto fail;
                } else {
                    uint64_t len;
                    if (!read_varint(&q, qe, &len) || len > (uint64_t)(qe - q)) goto fail;
                    ep = q;
                    en = (Py_ssize_t)len;
                    q += len;
                }
                has_v = 1;
            } else {
                goto fail;  /* another field, or one met twice: the decoder decides */
            }
        }
        Py_ssize_t at, start;
        if (!frag_open(&c, b, kp, kn, &at, &start) || !jelement(b, type, sub, v2, ep, en, depth)) goto fail;
        if (c.n) {
            Ent *last = &c.e[c.n - 1];
            Py_ssize_t m = last->kn < kn ? last->kn : kn;
            int r = memcmp(last->k, kp, (size_t)m);
            if (r > 0 || (r == 0 && last->kn >= kn)) sorted = 0;
        }
        if (!ctx_append(&c, kp, kn, start, b->n)) goto fail;
    }
    if (!sorted) {
        qsort(c.e, (size_t)c.n, sizeof(Ent), ent_cmp);
        Py_ssize_t w = 0;
        for (Py_ssize_t j = 0; j < c.n; j++) {
            if (j + 1 < c.n && c.e[j + 1].kn == c.e[j].kn && memcmp(c.e[j + 1].k, c.e[j].k, (size_t)c.e[j].kn) == 0)
                continue;  /* a later value for this key follows */
            c.e[w++] = c.e[j];
        }
        c.n = w;
    }
    if (!ctx_finish(&c, b)) goto fail;
    ctx_free(&c);
    return put1(b, '}');
fail:
    ctx_free(&c);
    return 0;
}

/* A special type's JSON, as special_value. */
static int jspecial(JBuf *b, int special, const char *p, Py_ssize_t n, int depth) {
    const char *end = p + n;
    int64_t i1 = 0, i2 = 0;
    int has1 = 0, has2 = 0, items = 0;
    const char *sp = NULL;
    Py_ssize_t sn = 0;
    if (special == S_STRINGLIST && !put1(b, '[')) return 0;
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag)) return 0;
        int number = (int)(tag >> 3), wt = (int)(tag & 7);
        if (wt != special_wire_type(special, (uint64_t)number)) return 0;
        if (wt == 0) {
            if (!read_varint(&p, end, &v)) return 0;
            if (number == 1) { i1 = (int64_t)v; has1 = 1; }
            else { i2 = (int64_t)(int32_t)v; has2 = 1; }
        } else {
            uint64_t len;
            if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return 0;
            if (special == S_STRINGLIST) {
                if ((items++ && !put1(b, ',')) || !put_str(b, p, (Py_ssize_t)len)) return 0;
            } else {
                sp = p;
                sn = (Py_ssize_t)len;
                if (number == 1) has1 = 1;
            }
            p += len;
        }
    }
    PyObject *r = NULL;
    switch (special) {
    case S_TIME:
    case S_MICROTIME:
        if (!(i1 || has1 || has2)) return PUTS(b, "null");
        if (i1 > GO_ZERO_SECONDS && i1 < 253402300800LL && (special == S_TIME || (i2 >= 0 && i2 < 1000000000))) {
            char t[40];
            int tn = format_rfc3339_buf(t, (long long)i1, special == S_TIME ? -1 : (long)(i2 / 1000));
            if (tn >= 0) return put_str(b, t, tn);
        }
        r = special == S_TIME ? PyObject_CallFunction(fmt_time, "L", (long long)i1)
                              : PyObject_CallFunction(fmt_micro, "LL", (long long)i1, (long long)i2);
        break;
    case S_DURATION:
        r = PyObject_CallFunction(fmt_duration, "L", (long long)i1);
        break;
    case S_QUANTITY:
        return sp && sn ? put_str(b, sp, sn) : PUTS(b, "\"0\"");
    case S_INTORSTRING:
        if (i1 == 0) return put_i64(b, (int64_t)(int32_t)i2);
        if (i1 == 1) return sp ? put_str(b, sp, sn) : PUTS(b, "\"\"");
        return 0;  /* an impossible type: Python raises */
    case S_RAWEXT:
    case S_FIELDSV1: {
        if (!has1) return PUTS(b, "null");
        if (!(sn >= 4 && memcmp(sp, "k8s\0", 4) == 0) && compact_json(b, sp, sn, depth + 1)) return 1;
        PyObject *raw = PyBytes_FromStringAndSize(sp, sn);  /* a nested object, or what the scan leaves */
        if (!raw) return 0;
        r = PyObject_CallOneArg(embedded, raw);
        Py_DECREF(raw);
        break;
    }
    case S_STRINGLIST:
        return put1(b, ']');
    default:
        return 0;
    }
    if (!r) return 0;
    int ok = put_obj(b, r, depth + 1);
    Py_DECREF(r);
    return ok;
}

static int is_metadata(const char *k, Py_ssize_t kn) {
    return kn == 8 && memcmp(k, "metadata", 8) == 0;
}

/* Field i into c, as emit() puts it into the dict. 0 on bail/error. */
static int jfield(Ctx *c, JBuf *b, PyObject *f, JSlot *s, Occs *os, int mode, int type, int label, int depth) {
    /* An absent omitempty field (most fields of most messages) returns before touching the field's
     * tuple and key: those reads are the cache misses that cost. */
    if (!s->present && (mode == M_SCALAR_OMIT || mode == M_BYTES_OMIT || mode == M_STRLIST_OMIT)) return 1;
    if (!s->present && (mode == M_PRESENCE || mode == M_COLLECTION) && PyTuple_GET_ITEM(f, F_NULL_ABSENT) != Py_True)
        return 1;
    PyObject *sub = PyTuple_GET_ITEM(f, F_SUB);
    Py_ssize_t kn, at, start;
    const char *k = utf8_of(PyTuple_GET_ITEM(f, F_KEY), &kn);
    if (!k) return 0;
    int null_absent = 1;  /* absent and not null: returned above */
    const char *mp = s->present ? s->p : "";
    Py_ssize_t mn = s->present ? s->n : 0;
    const char *rv = NULL;
    Py_ssize_t rvn = 0;
    if (c->rv && type == T_MSG && is_metadata(k, kn)) {
        rv = c->rv;
        rvn = c->rvn;
    }
    switch (mode) {
    case M_SCALAR:
        if (!frag_open(c, b, k, kn, &at, &start)) return 0;
        if (!(s->present ? jscalar(b, type, s->v, s->p, s->n) : put_obj(b, PyTuple_GET_ITEM(f, F_ZERO), depth)))
            return 0;
        break;
    case M_SCALAR_OMIT: {
        if (!s->present) return 1;
        int truthy;
        switch (type) {
        case T_STRING: case T_BYTES: truthy = s->n > 0; break;
        case T_INT32: truthy = (int32_t)s->v != 0; break;
        case T_UINT32: truthy = (uint32_t)s->v != 0; break;
        case T_BOOL: case T_INT64: case T_UINT64: truthy = s->v != 0; break;
        default: return 0;
        }
        if (!truthy) return 1;
        if (!frag_open(c, b, k, kn, &at, &start) || !jscalar(b, type, s->v, s->p, s->n)) return 0;
        break;
    }
    case M_PRESENCE:
        if (!s->present && !null_absent) return 1;
        if (!frag_open(c, b, k, kn, &at, &start)) return 0;
        if (!s->present) { if (!PUTS(b, "null")) return 0; }
        else if (type == T_MSG) { if (!jmsg(sub, s->p, s->n, b, depth + 1, rv, rvn)) return 0; }
        else if (!jelement(b, type, sub, s->v, s->p, s->n, depth)) return 0;
        break;
    case M_BYTES_OMIT:
        if (!s->present || s->n == 0) return 1;
        if (!frag_open(c, b, k, kn, &at, &start) || !put_b64(b, s->p, s->n)) return 0;
        break;
    case M_COLLECTION:
        if (!s->present && !null_absent) return 1;
        if (!frag_open(c, b, k, kn, &at, &start)) return 0;
        if (!s->present) {
            if (!PUTS(b, "null")) return 0;
        } else if (label == L_MAP) {
            if (!jmap(b, type, sub, os, s->head, depth)) return 0;
        } else {
            if (!put1(b, '[')) return 0;
            for (Py_ssize_t i = s->head; i >= 0; i = os->o[i].next) {
                if ((i != s->head && !put1(b, ',')) || !jelement(b, type, sub, os->o[i].v, os->o[i].p, os->o[i].n, depth))
                    return 0;
            }
            if (!put1(b, ']')) return 0;
        }
        break;
    case M_MSG:
        if (!frag_open(c, b, k, kn, &at, &start) || !jmsg(sub, mp, mn, b, depth + 1, rv, rvn)) return 0;
        break;
    case M_MSG_OMITZERO: {
        if (!frag_open(c, b, k, kn, &at, &start)) return 0;
        Py_ssize_t vstart = b->n;
        if (!jmsg(sub, mp, mn, b, depth + 1, NULL, 0)) return 0;
        JBuf z = {NULL, 0, 0};
        int ok = put_obj(&z, PyTuple_GET_ITEM(f, F_ZERO), 0);
        int same = ok && z.n == b->n - vstart && memcmp(z.p, b->p + vstart, (size_t)z.n) == 0;
        PyMem_Free(z.p);
        if (!ok) return 0;
        if (same) { b->n = at; return 1; }
        if (rv) {  /* the override comes after the zero test, as in Entry._decode */
            b->n = vstart;
            if (!jmsg(sub, mp, mn, b, depth + 1, rv, rvn)) return 0;
        }
        break;
    }
    case M_STRLIST_OMIT:
    case M_STRLIST_PRESENCE:
        if (!s->present) {
            if (mode == M_STRLIST_OMIT) return 1;
            if (!frag_open(c, b, k, kn, &at, &start) || !PUTS(b, "null")) return 0;
            break;
        }
        if (!frag_open(c, b, k, kn, &at, &start)) return 0;
        Py_ssize_t vstart = b->n;
        if (!jmsg(sub, s->p, s->n, b, depth + 1, NULL, 0)) return 0;
        if (mode == M_STRLIST_OMIT && b->n - vstart == 2 && b->p[vstart] == '[') {  /* [] */
            b->n = at;
            return 1;
        }
        break;
    case M_INLINE:
        return jfill(sub, mp, mn, b, c, depth + 1);
    default:
        return 0;
    }
    return c->may_dup ? ctx_set(c, k, kn, start, b->n) : ctx_append(c, k, kn, start, b->n);
}

static void occs_free(Occs *os) {
    if (os->o != os->st) PyMem_Free(os->o);
}

/* As msg_fill: the present fields (sparse) or all fields (generated) of a message into c. */
static int jfill(PyObject *spec, const char *p, Py_ssize_t n, JBuf *b, Ctx *c, int depth) {
    if (depth > MAX_DEPTH) return 0;
    PyObject *fields = PyList_GET_ITEM(spec, G_FIELDS);
    PyObject *order = PyList_GET_ITEM(spec, G_ORDER);
    int sparse = PyList_GET_ITEM(spec, G_SPARSE) == Py_True;
    Py_ssize_t nf = PyTuple_GET_SIZE(fields);
    JSlot stack[STACK_SLOTS];
    JSlot *slots = nf <= STACK_SLOTS ? stack : PyMem_Malloc(sizeof(JSlot) * (size_t)(nf ? nf : 1));
    if (!slots) { PyErr_NoMemory(); return 0; }
    for (Py_ssize_t i = 0; i < nf; i++) {
        slots[i].present = 0;
        slots[i].head = slots[i].tail = -1;
        slots[i].p = NULL;
        slots[i].n = 0;
        slots[i].v = 0;
    }
    Occs os;
    os.o = os.st;
    os.n = 0;
    os.cap = STACK_OCCS;
    int ok = jparse(spec, p, n, slots, nf, &os);
    PyObject *modes_b = PyList_GET_ITEM(spec, G_MODES);
    if (memchr(PyBytes_AS_STRING(modes_b), M_INLINE, (size_t)PyBytes_GET_SIZE(modes_b))) c->may_dup = 1;
    const unsigned char *ord = (const unsigned char *)PyBytes_AS_STRING(order);
    const unsigned char *types = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_TYPES));
    const unsigned char *labels = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_LABELS));
    const unsigned char *modes = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(spec, G_MODES));
    for (Py_ssize_t j = 0; ok && j < PyBytes_GET_SIZE(order); j++) {
        Py_ssize_t i = ord[j];
        if (sparse && !slots[i].present) continue;
        ok = jfield(c, b, PyTuple_GET_ITEM(fields, i), &slots[i], &os, modes[i], types[i], labels[i], depth);
    }
    occs_free(&os);
    if (slots != stack) PyMem_Free(slots);
    return ok;
}

/* As msg_value for a non-special message, without the braces: static defaults, the fields, the dyn
 * defaults, the reorder, then the resourceVersion override (as Entry._decode sets it afterwards). */
static int jbody(PyObject *spec, const char *p, Py_ssize_t n, JBuf *b, Ctx *c, int depth, const char *rv,
                 Py_ssize_t rvn) {
    Py_ssize_t at, start, kn;
    const char *k;
    PyObject *st = PyList_GET_ITEM(spec, G_STATIC);
    if (st != Py_None) {
        c->may_dup = 1;
        PyObject *key, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(st, &pos, &key, &val)) {
            if (!PyUnicode_CheckExact(key) || !(k = PyUnicode_AsUTF8AndSize(key, &kn))) return 0;
            if (!frag_open(c, b, k, kn, &at, &start) || !put_obj(b, val, depth) || !ctx_set(c, k, kn, start, b->n))
                return 0;
        }
    }
    if (!jfill(spec, p, n, b, c, depth)) return 0;
    PyObject *dyn = PyList_GET_ITEM(spec, G_DYN);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(dyn); j++) {
        PyObject *pair = PyTuple_GET_ITEM(dyn, j);
        if (!(k = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), &kn))) return 0;
        if (ctx_find(c, k, kn) >= 0) continue;
        if (!frag_open(c, b, k, kn, &at, &start) || !put_obj(b, PyTuple_GET_ITEM(pair, 1), depth)
            || !ctx_append(c, k, kn, start, b->n))
            return 0;
    }
    PyObject *reorder = PyList_GET_ITEM(spec, G_REORDER);
    if (reorder != Py_None) {
        /* {k: d[k] for k in reorder if k in d}: entries in that order, the others dropped */
        Ctx r;
        ctx_init(&r, c->base, NULL, 0);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(reorder); j++) {
            if (!(k = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(reorder, j), &kn))) { ctx_free(&r); return 0; }
            Py_ssize_t i = ctx_find(c, k, kn);
            if (i >= 0 && !ctx_append(&r, c->e[i].k, c->e[i].kn, c->e[i].start, c->e[i].end)) { ctx_free(&r); return 0; }
        }
        c->n = 0;
        for (Py_ssize_t j = 0; j < r.n; j++) {
            if (!ctx_append(c, r.e[j].k, r.e[j].kn, r.e[j].start, r.e[j].end)) { ctx_free(&r); return 0; }
        }
        ctx_free(&r);
    }
    if (!ctx_finish(c, b)) return 0;
    if (rv) {
        if (!frag_open(c, b, "resourceVersion", 15, &at, &start) || !put_str(b, rv, rvn)
            || !ctx_set(c, "resourceVersion", 15, start, b->n) || !ctx_finish(c, b))
            return 0;
    }
    return 1;
}

/* As msg_value: a message's JSON value; rv: the resourceVersion to set in it (NULL: none). */
static int jmsg(PyObject *spec, const char *p, Py_ssize_t n, JBuf *b, int depth, const char *rv, Py_ssize_t rvn) {
    if (depth > MAX_DEPTH) return 0;
    int special = (int)PyLong_AsLong(PyList_GET_ITEM(spec, G_SPECIAL));
    if (special) return jspecial(b, special, p, n, depth);
    if (!put1(b, '{')) return 0;
    Ctx c;
    ctx_init(&c, b->n, NULL, 0);
    int ok = jbody(spec, p, n, b, &c, depth, rv, rvn);
    ctx_free(&c);
    return ok && put1(b, '}');
}

/* The head dict's "key":value pairs, then "object": (the JSON form of an Entry, see data.py). */
static int jhead(JBuf *b, PyObject *head) {
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    if (!put1(b, '{')) return 0;
    while (PyDict_Next(head, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || !put_pystr(b, k) || !put1(b, ':') || !put_obj(b, v, 0) || !put1(b, ','))
            return 0;
    }
    return PUTS(b, "\"object\":");
}

/* json(spec, raw, kind, api_version, fill, resource_version, head) -> bytes, or None when Python must decide.
 * The text of jsonout.dumps(decode(spec, raw, kind, api_version, fill)), with metadata.resourceVersion
 * set to resource_version (a str; "" or None: left as is); when head (a dict) is given, the whole line
 * {**head, "object": ...} instead. */
static PyObject *py_json(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyList_Check(args[0]) || !PyBytes_Check(args[1]) || !PyUnicode_Check(args[2])
        || !PyUnicode_Check(args[3]) || (args[5] != Py_None && !PyUnicode_Check(args[5]))
        || (args[6] != Py_None && !PyDict_CheckExact(args[6]))) {
        PyErr_SetString(PyExc_TypeError, "json(spec, raw: bytes, kind: str, api_version: str, fill, "
                                         "resource_version: str | None, head: dict | None)");
        return NULL;
    }
    PyObject *spec = args[0];
    const char *p = PyBytes_AS_STRING(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[1]);
    const char *rv = NULL;
    Py_ssize_t rvn = 0, at, start;
    JBuf b = {NULL, 0, 0};
    Ctx top, body;
    int fill = PyObject_IsTrue(args[4]);
    if (fill < 0) return NULL;
    if (args[5] != Py_None) {
        rv = PyUnicode_AsUTF8AndSize(args[5], &rvn);
        if (!rv) {  /* a lone surrogate: the dict path writes what jsonout makes of it */
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (rvn == 0) rv = NULL;
    }
    if (PyLong_AsLong(PyList_GET_ITEM(spec, G_SPECIAL)) != 0) Py_RETURN_NONE;
    ctx_init(&top, 0, fill ? rv : NULL, rvn);
    top.may_dup = 1;  /* kind and apiVersion, then the fields */
    ctx_init(&body, 0, rv, rvn);
    if (!buf_reserve(&b, 3 * n + 512)) goto fail;  /* JSON is ~2x its protobuf, and the head: one allocation */
    if (args[6] != Py_None && !jhead(&b, args[6])) goto fail;
    if (!put1(&b, '{')) goto fail;
    top.base = b.n;
    if (!frag_open(&top, &b, "kind", 4, &at, &start) || !put_pystr(&b, args[2]) || !ctx_append(&top, "kind", 4, start, b.n))
        goto fail;
    if (!frag_open(&top, &b, "apiVersion", 10, &at, &start) || !put_pystr(&b, args[3])
        || !ctx_append(&top, "apiVersion", 10, start, b.n))
        goto fail;
    if (fill) {
        if (!jfill(spec, p, n, &b, &top, 0)) goto fail;
    } else {
        /* {"kind": .., "apiVersion": .., **body}: the body's keys after them (or in their place) */
        if (!put1(&b, ',')) goto fail;
        body.base = b.n;
        if (!jbody(spec, p, n, &b, &body, 0, NULL, 0)) goto fail;
        if (body.n == 0) b.n -= 1;  /* the comma */
        for (Py_ssize_t j = 0; j < body.n; j++) {
            if (!ctx_set(&top, body.e[j].k, body.e[j].kn, body.e[j].start, body.e[j].end)) goto fail;
        }
    }
    if (!ctx_finish(&top, &b) || !put1(&b, '}')) goto fail;
    if (args[6] != Py_None && !put1(&b, '}')) goto fail;
    ctx_free(&top);
    ctx_free(&body);
    PyObject *out = PyBytes_FromStringAndSize(b.p, b.n);
    PyMem_Free(b.p);
    return out;
fail:
    ctx_free(&top);
    ctx_free(&body);
    PyMem_Free(b.p);
    PyErr_Clear();  /* any error or bail: the dict path decides */
    Py_RETURN_NONE;
}

/* ==================================== end of the emitter ==================================== */

static PyObject *py_configure(PyObject *self, PyObject *args) {
    PyObject *a, *b, *c, *e, *f;
    if (!PyArg_ParseTuple(args, "OOOOO", &a, &b, &c, &e, &f)) return NULL;
    Py_XSETREF(fmt_time, Py_NewRef(a));
    Py_XSETREF(fmt_micro, Py_NewRef(b));
    Py_XSETREF(fmt_duration, Py_NewRef(c));
    Py_XSETREF(embedded, Py_NewRef(e));
    Py_XSETREF(b64s, Py_NewRef(f));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_FASTCALL, "Wire bytes -> dict, or None (see _fast.py)."},
    {"has_unknown", (PyCFunction)(void (*)(void))py_has_unknown, METH_FASTCALL,
     "Whether the wire bytes hold a field the schema does not know (see _fast.py)."},
    {"redact", (PyCFunction)(void (*)(void))py_redact, METH_FASTCALL,
     "Leaves along field-number paths rewritten by fn, on the wire bytes (see _fast.py)."},
    {"json", (PyCFunction)(void (*)(void))py_json, METH_FASTCALL,
     "Wire bytes -> the object's JSON text (or the entry's line), or None (see _fast.py)."},
    {"configure", py_configure, METH_VARARGS, "The Python helpers decode calls (time formats, embedded JSON, base64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cdecode", NULL, -1, methods};

/* The table layout this file reads: _fast.py refuses a module built from
   another layout (a stale build in a checkout), so a mismatch costs speed, never memory safety.
   Bump it with every change to the tables or the enums. */
#define TABLES_ABI 2

PyMODINIT_FUNC PyInit__cdecode(void) {
    str_zero = PyUnicode_InternFromString("0");
    empty_str = PyUnicode_FromStringAndSize("", 0);
    if (!str_zero || !empty_str) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "TABLES_ABI", TABLES_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
