/* Fast reads for the compiled parts: a plain slot of one class at its
 * offset, and the calling thread's dict of a threading.local.
 *
 * An attribute that the compiled fast paths read on every operation, and
 * that is a plain slot (a member descriptor: from __slots__, or an object
 * member of a C type) of a known class, is read at the slot's offset for
 * instances of exactly that class, as long as that member descriptor is
 * what the class's attribute look-up finds, and the class's attribute
 * look-up is the generic one (no __getattribute__ of its own): checked at
 * set-up, and again whenever the class has changed since the last check
 * (CPython gives a class a new version tag whenever it is modified).
 * Every other read goes by name, through the attribute look-up, and so
 * does a read of an empty slot (which raises the AttributeError the
 * look-up raises, or gives None for a C type's member).  The result is
 * the look-up's: the member descriptor it would use reads the same offset.
 */

#ifndef DNEIO_FAST_READS_H
#define DNEIO_FAST_READS_H

#include <Python.h>
#include <structmember.h>

typedef struct {
    PyTypeObject *type; /* NULL: always by name */
    PyObject *member;   /* the member descriptor found on it */
    unsigned int tag;   /* the class's version tag when last checked */
    Py_ssize_t offset;
    PyObject **name;    /* the attribute's (interned) name */
} SlotRead;

/* A read of the attribute named by the str object in ``name_var``. */
#define SLOT_READ(name_var) {NULL, NULL, 0, 0, &(name_var)}

/* The class changed since the last check: is the member still what its
 * look-up finds?  (The look-up also gives the class a version tag.) */
static inline int
slot_read_still_holds(SlotRead *r)
{
    if (_PyType_Lookup(r->type, *r->name) != r->member || r->type->tp_version_tag == 0) {
        return 0;
    }
    r->tag = r->type->tp_version_tag;
    return 1;
}

/* obj's attribute (a new reference), or NULL with an exception set. */
static inline PyObject *
read_slot(SlotRead *r, PyObject *obj)
{
    if (Py_TYPE(obj) == r->type && r->type->tp_getattro == PyObject_GenericGetAttr
        && (r->type->tp_version_tag == r->tag || slot_read_still_holds(r))) {
        PyObject *v = *(PyObject **)((char *)obj + r->offset);
        if (v != NULL) {
            return Py_NewRef(v);
        }
    }
    return PyObject_GetAttr(obj, *r->name);
}

/* obj.attr = value, at the offset where the read goes by offset and the
 * member may be written; by name otherwise.  0, or -1 with an exception. */
static inline int
write_slot(SlotRead *r, PyObject *obj, PyObject *value)
{
    if (Py_TYPE(obj) == r->type && r->type->tp_setattro == PyObject_GenericSetAttr
        && r->type->tp_getattro == PyObject_GenericGetAttr
        && (r->type->tp_version_tag == r->tag || slot_read_still_holds(r))
        && !(((PyMemberDescrObject *)r->member)->d_member->flags & READONLY)) {
        PyObject **field = (PyObject **)((char *)obj + r->offset);
        PyObject *old = *field;
        *field = Py_NewRef(value);
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(obj, *r->name, value);
}

/* mapping.get(key) (a new reference), read straight from an exact dict. */
static inline PyObject *
mapping_get(PyObject *mapping, PyObject *key)
{
    if (PyDict_CheckExact(mapping)) {
        PyObject *v = PyDict_GetItemWithError(mapping, key);
        if (v != NULL) {
            return Py_NewRef(v);
        }
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return PyObject_CallMethod(mapping, "get", "O", key);
}

/* Is obj's attribute true?  1, 0, or -1. */
static inline int
slot_true(SlotRead *r, PyObject *obj)
{
    PyObject *v = read_slot(r, obj);
    if (v == NULL) {
        return -1;
    }
    int t = v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* The one positional argument of a call with no keywords (borrowed), or
 * NULL with a TypeError naming ``what`` (for keywords) or ``name``. */
static inline PyObject *
only_argument(PyObject *args, PyObject *kwds, const char *what, const char *name)
{
    PyObject *value;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_Format(PyExc_TypeError, "%s takes no keyword arguments", what);
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) == 1) {
        return PyTuple_GET_ITEM(args, 0);  /* one argument: the common case */
    }
    return PyArg_UnpackTuple(args, name, 1, 1, &value) ? value : NULL;
}

/* Is obj's attribute exactly ``expected``?  1, 0, or -1. */
static inline int
slot_is(SlotRead *r, PyObject *obj, PyObject *expected)
{
    PyObject *v = read_slot(r, obj);
    if (v == NULL) {
        return -1;
    }
    int same = v == expected;
    Py_DECREF(v);
    return same;
}

/* Read at the offset for instances of ``type``, if the attribute is a
 * plain slot there; by name otherwise.  0, or -1 with an exception set. */
static inline int
set_slot_read(SlotRead *r, PyObject *type)
{
    Py_CLEAR(r->type);
    Py_CLEAR(r->member);
    if (!PyType_Check(type)) {
        PyErr_Format(PyExc_TypeError, "expected a class, not %R", type);
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    /* The look-up also gives the class a version tag, if it can have one. */
    PyObject *member = _PyType_Lookup(tp, *r->name); /* borrowed */
    if (member != NULL && Py_IS_TYPE(member, &PyMemberDescr_Type) && tp->tp_version_tag != 0) {
        PyMemberDef *def = ((PyMemberDescrObject *)member)->d_member;
        /* (A T_OBJECT member reads as None where it is empty: the read by
         * name, which an empty slot falls back to, says so.) */
        if ((def->type == T_OBJECT_EX || def->type == T_OBJECT)
            && !(def->flags & READ_RESTRICTED)) {
            r->type = (PyTypeObject *)Py_NewRef(type);
            r->member = Py_NewRef(member);
            r->tag = tp->tp_version_tag;
            r->offset = def->offset;
        }
    }
    return 0;
}

/* Let go of the classes of ``reads``: every one goes by name. */
static inline void
slot_reads_clear(SlotRead *const *reads, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        Py_CLEAR(reads[i]->type);
        Py_CLEAR(reads[i]->member);
    }
}

/* set_slot_read() for each of ``reads``, with the class in ``types`` at the
 * same place; on an error, every one goes by name.  0, or -1. */
static inline int
slot_reads_setup(SlotRead *const *reads, PyObject *const *types, size_t n)
{
    slot_reads_clear(reads, n);
    for (size_t i = 0; i < n; i++) {
        if (set_slot_read(reads[i], types[i]) < 0) {
            slot_reads_clear(reads, n);
            return -1;
        }
    }
    return 0;
}

/* The attribute ``name`` of ``tp``'s class dict (borrowed), where it is what
 * the attribute look-up of an instance of exactly ``tp`` meets first: the
 * look-up is the generic one and no instance dict can hide it.  NULL
 * otherwise, and when the class has no such attribute (no exception set). */
static inline PyObject *
class_attribute_for_instances(PyTypeObject *tp, PyObject *name)
{
    if (tp->tp_dictoffset != 0 || tp->tp_getattro != PyObject_GenericGetAttr) {
        return NULL;
    }
    return _PyType_Lookup(tp, name);
}

/* Is ``descr`` (a class attribute, or NULL) the method descriptor of the C
 * function ``fn``?  Then calling ``fn`` with an instance of a class whose
 * look-up finds it is what calling the method would do. */
static inline int
is_method_of(PyObject *descr, PyCFunction fn)
{
    return descr != NULL && Py_IS_TYPE(descr, &PyMethodDescr_Type)
           && ((PyMethodDescrObject *)descr)->d_method->ml_meth == fn;
}

/* The last class other than ``base`` found to derive from it, by address
 * and version tag: no reference is held, and a class at the same address
 * later is another class only with another tag (CPython never hands out a
 * tag twice, and a class whose bases change gets a new one). */
typedef struct {
    PyTypeObject *type;
    unsigned int tag;
} SeenClass;

/* PyObject_TypeCheck(o, base), with no walk of the MRO for the class *seen
 * remembers, which the next calls most often meet again. */
static inline int
is_kind_of(PyObject *o, PyTypeObject *base, SeenClass *seen)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == base || (tp == seen->type && tp->tp_version_tag == seen->tag && seen->tag != 0)) {
        return 1;
    }
    if (!PyType_IsSubtype(tp, base)) {
        return 0;
    }
    if (tp->tp_version_tag == 0 && !PyErr_Occurred()) {
        /* A class changed since its last attribute look-up has no tag until
         * its next one: a look-up in its MRO through CPython's cache gives it
         * one, and runs no Python code (callers rely on that). */
        static PyObject *name = NULL;
        if (name == NULL) {
            name = PyUnicode_InternFromString("__init__");
        }
        if (name != NULL) {
            (void)_PyType_Lookup(tp, name); /* borrowed, or NULL with no error */
        }
        else {
            PyErr_Clear();
        }
    }
    seen->type = tp;
    seen->tag = tp->tp_version_tag;
    return 1;
}

/* func(arg), through func's vectorcall where it has one: what
 * PyObject_CallOneArg does, without its read of the thread state (a C
 * thread-local from CPython 3.12 on) and its check of the result, which
 * here is only that a NULL comes with an exception. */
/* PyVectorcall_Function(func), read in place (CPython 3.13 made it a call). */
static inline vectorcallfunc
vectorcall_of(PyObject *func)
{
    PyTypeObject *tp = Py_TYPE(func);
    if (!PyType_HasFeature(tp, Py_TPFLAGS_HAVE_VECTORCALL) || tp->tp_vectorcall_offset <= 0) {
        return NULL;
    }
    vectorcallfunc call;
    memcpy(&call, (char *)func + tp->tp_vectorcall_offset, sizeof(call));
    return call;
}

static inline PyObject *
call_one(PyObject *func, PyObject *arg)
{
    vectorcallfunc call = vectorcall_of(func);
    if (call == NULL) {
        return PyObject_CallOneArg(func, arg);
    }
    PyObject *args[2] = {NULL, arg};
    PyObject *result = call(func, args + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (result == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_SystemError, "%R returned NULL without setting an exception", func);
    }
    return result;
}

/* func(), through func's vectorcall where it has one (see call_one). */
static inline PyObject *
call_noargs(PyObject *func)
{
    vectorcallfunc call = vectorcall_of(func);
    if (call == NULL) {
        return PyObject_CallNoArgs(func);
    }
    PyObject *result = call(func, NULL, 0, NULL);
    if (result == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_SystemError, "%R returned NULL without setting an exception", func);
    }
    return result;
}

/* The reads in ``reads`` that go by offset now, as "Class.name" (a list). */
static inline PyObject *
slot_reads_by_offset(SlotRead *const *reads, size_t n)
{
    PyObject *result = PyList_New(0);
    for (size_t i = 0; result != NULL && i < n; i++) {
        SlotRead *r = reads[i];
        if (r->type != NULL && r->type->tp_getattro == PyObject_GenericGetAttr
            && (r->type->tp_version_tag == r->tag || slot_read_still_holds(r))) {
            PyObject *s = PyUnicode_FromFormat("%s.%U", r->type->tp_name, *r->name);
            if (s == NULL || PyList_Append(result, s) < 0) {
                Py_CLEAR(result);
            }
            Py_XDECREF(s);
        }
    }
    return result;
}

/* The calling thread's dict of a threading.local (trio's run context), as
 * local.__dict__, with the last thread's cached by its interpreter thread
 * id (unique for the life of the process), as the core caches the thread's
 * state.  A thread-local object keeps one dict per thread for as long as
 * the thread lives, and its __dict__ cannot be replaced.  Only a local
 * whose attribute look-up is threading.local's own is cached
 * (local_dict_setup), and the cache is emptied whenever that runs again. */
typedef struct {
    PyObject *local;    /* the threading.local, or NULL before setup */
    PyObject *name;     /* "__dict__" */
    int cached;         /* may its dict be cached? */
    uint64_t thread_id;
    PyObject *dict;     /* that thread's dict, or NULL */
    PyObject *owner;    /* the core's ThreadState of that thread, held, or NULL */
} LocalDict;

/* Follow ``local`` (NULL: none).  0, or -1 with an exception set. */
static inline int
local_dict_setup(LocalDict *c, PyObject *local)
{
    Py_CLEAR(c->dict);
    Py_CLEAR(c->owner);
    Py_CLEAR(c->local);
    c->cached = 0;
    if (local == NULL) {
        return 0;
    }
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *base = threading == NULL ? NULL : PyObject_GetAttrString(threading, "local");
    Py_XDECREF(threading);
    if (base == NULL) {
        return -1;
    }
    c->cached = PyType_Check(base) && PyObject_TypeCheck(local, (PyTypeObject *)base)
                && Py_TYPE(local)->tp_getattro == ((PyTypeObject *)base)->tp_getattro;
    Py_DECREF(base);
    if (c->name == NULL && (c->name = PyUnicode_InternFromString("__dict__")) == NULL) {
        return -1;
    }
    c->local = Py_NewRef(local);
    return 0;
}

/* This thread's dict of the local (a new reference), or NULL with an
 * exception set. */
static inline PyObject *
local_dict(LocalDict *c)
{
    uint64_t id = PyThreadState_GetID(PyThreadState_Get());
    if (c->dict != NULL && id == c->thread_id) {
        return Py_NewRef(c->dict);
    }
    if (c->local == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: no run context to read");
        return NULL;
    }
    PyObject *d = PyObject_GetAttr(c->local, c->name);
    if (d != NULL && !PyDict_Check(d)) {
        Py_DECREF(d);
        PyErr_SetString(PyExc_TypeError, "dneio: a run context has no dict");
        return NULL;
    }
    if (d != NULL && c->cached) {
        Py_XSETREF(c->dict, Py_NewRef(d));
        c->thread_id = id;
        Py_CLEAR(c->owner);
    }
    return d;
}

/* The same, for the thread whose core ThreadState is ``st`` (the calling
 * thread's; NULL if not known): the cached dict is the one of the thread
 * whose ThreadState it was cached with, which needs no look-up of the
 * thread.  A ThreadState belongs to one thread, and held here it cannot be
 * freed and its address given to another thread's. */
static inline PyObject *
local_dict_of(LocalDict *c, PyObject *st)
{
    if (st != NULL && st == c->owner && c->dict != NULL) {
        return Py_NewRef(c->dict);
    }
    PyObject *d = local_dict(c);
    if (d != NULL && st != NULL && d == c->dict) {
        Py_XSETREF(c->owner, Py_NewRef(st));
    }
    return d;
}

/* ``key`` in ``d``, a thread's dict of a threading.local (borrowed), or
 * NULL: not there, or an error with an exception set.  An empty dict needs
 * no look-up: trio empties its run context's when a run ends, so a thread
 * where trio is not running (an asyncio task's, with trio loaded) asks at
 * the cost of a size check. */
static inline PyObject *
local_dict_item(PyObject *d, PyObject *key)
{
    return PyDict_GET_SIZE(d) == 0 ? NULL : PyDict_GetItemWithError(d, key);
}

/* A coroutine's cr_frame (None once it has finished), as the attribute
 * look-up gives it: for an object of exactly the coroutine type (which no
 * one can change) its getter is called directly; everything else goes by
 * name.  ``name`` is the interned "cr_frame". */
static inline PyObject *
coro_frame(PyObject *coro, PyObject *name)
{
    static getter cr_frame_get = NULL;
    static int looked = 0;
    if (!looked) {
        looked = 1;
        for (PyGetSetDef *g = PyCoro_Type.tp_getset; g != NULL && g->name != NULL; g++) {
            if (strcmp(g->name, "cr_frame") == 0) {
                cr_frame_get = g->get;
            }
        }
    }
    if (cr_frame_get != NULL && Py_IS_TYPE(coro, &PyCoro_Type)) {
        return cr_frame_get(coro, NULL);
    }
    return PyObject_GetAttr(coro, name);
}

/* id(obj), as the int object Python's id() makes: the last one made is
 * kept and handed out again for the same address, which always gives an
 * equal int (the hosts' records are keyed by id). */
static inline PyObject *
id_of(PyObject *obj)
{
    static void *last = NULL;
    static PyObject *last_id = NULL;
    if (last_id != NULL && last == (void *)obj) {
        return Py_NewRef(last_id);
    }
    PyObject *id = PyLong_FromVoidPtr(obj);
    if (id != NULL) {
        Py_XSETREF(last_id, Py_NewRef(id));
        last = (void *)obj;
    }
    return id;
}

/* The exception being raised, normalised, with its traceback (a new
 * reference; none is set afterwards), or NULL if there is none. */
static inline PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise ``exc`` (stolen; NULL: nothing) again, as take_exception took it. */
static inline void
give_exception(PyObject *exc)
{
    if (exc == NULL) {
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
#endif
}

#endif /* DNEIO_FAST_READS_H */
