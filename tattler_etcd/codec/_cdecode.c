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

static PyObject *format_rfc3339(long long seconds, long micros) {
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
    if (y < 1 || y > 9999) return NULL;  /* not handled here */
    char buf[40];
    int n;
    if (micros < 0)
        n = snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ", y, m, d, rem / 3600,
                     rem / 60 % 60, rem % 60);
    else
        n = snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06ldZ", y, m, d, rem / 3600,
                     rem / 60 % 60, rem % 60, micros);
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
} Buf;

static int put_bytes(Buf *out, const char *p, Py_ssize_t n) {
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

static int put_varint(Buf *out, uint64_t v) {
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
    Buf out = {NULL, 0};
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
    {"configure", py_configure, METH_VARARGS, "The Python helpers decode calls (time formats, embedded JSON, base64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cdecode", NULL, -1, methods};

/* The table layout this file reads: _fast.py refuses a module built from
   another layout (a stale build in a checkout), so a mismatch costs speed, never memory safety.
   Bump it with every change to the tables or the enums. */
#define TABLES_ABI 1

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
