/* The compiled native core of dneio: the hot path of shift and of resuming a
 * native continuation.
 *
 * It mirrors, step for step, the pure-Python twin in _driver_py.py, which stays the reference: everything unusual (a queued or
 * trampolined resumption, the entry hook, a func that fails, a foreign await,
 * host runners) is handed back to the Python functions registered with
 * setup().  Per-thread state is the ThreadState type defined here, which
 * _impl.py uses in place of its Python twin (_run_context.py).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Python objects registered by setup(). */
static PyObject *local_obj = NULL;      /* _impl.local */
static PyObject *shift_mark = NULL;     /* _driver_py.SHIFT */
static PyObject *py_resume = NULL;      /* _queue.resume(st, k, is_exc, value) */
static PyObject *py_drain = NULL;       /* _queue.drain(st, reraise) */
static PyObject *py_func_failed = NULL; /* _driver_py._func_failed(st, coro, k, func, exc) */
static PyObject *py_after_foreign = NULL; /* _driver_py._after_foreign(st, coro, yielded) */
static PyObject *py_spent = NULL;       /* _driver_py._raise_spent(k) */
static PyObject *py_host_shift = NULL;  /* _driver_py.host_shift(func) -> generator */
static PyObject *continuation_type = NULL; /* _driver_py.NativeContinuation */
static PyObject *entry_hook = NULL;     /* _driver_py.entry_hook (None or an object) */
static Py_ssize_t max_depth = 40;
static PyObject *str_state = NULL;
static PyObject *py_reset = NULL;       /* _driver_py.py_reset, for everything unusual */
static PyObject *py_entry_probe = NULL; /* calls _driver_py.entry_probe */
static PyObject *probe_module = NULL;  /* _driver_py.entry_probe_module, or None */
static PyObject *str_enter = NULL;
static PyObject *str_leave = NULL;

/* ---------------------------------------------------------------- ThreadState */

typedef struct {
    PyObject_HEAD
    PyObject *driving;
    PyObject *request;
    PyObject *queue;
    PyObject *entry_host;
    Py_ssize_t depth;
    Py_ssize_t hold;
    char pump_pending;
} ThreadState;

static int
ts_init(ThreadState *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":ThreadState", kwlist)) {
        return -1;
    }
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return -1;
    }
    PyObject *queue = PyObject_CallMethod(collections, "deque", NULL);
    Py_DECREF(collections);
    if (queue == NULL) {
        return -1;
    }
    Py_XSETREF(self->queue, queue);
    Py_XSETREF(self->driving, Py_NewRef(Py_None));
    Py_XSETREF(self->request, Py_NewRef(Py_None));
    Py_XSETREF(self->entry_host, Py_NewRef(Py_None));
    self->depth = 0;
    self->hold = 0;
    self->pump_pending = 0;
    return 0;
}

static int
ts_traverse(ThreadState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->driving);
    Py_VISIT(self->request);
    Py_VISIT(self->queue);
    Py_VISIT(self->entry_host);
    return 0;
}

static int
ts_clear(ThreadState *self)
{
    Py_CLEAR(self->driving);
    Py_CLEAR(self->request);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->entry_host);
    return 0;
}

static void
ts_dealloc(ThreadState *self)
{
    PyObject_GC_UnTrack(self);
    ts_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef ts_members[] = {
    {"driving", T_OBJECT, offsetof(ThreadState, driving), 0, NULL},
    {"request", T_OBJECT, offsetof(ThreadState, request), 0, NULL},
    {"queue", T_OBJECT, offsetof(ThreadState, queue), 0, NULL},
    {"entry_host", T_OBJECT, offsetof(ThreadState, entry_host), 0, NULL},
    {"depth", T_PYSSIZET, offsetof(ThreadState, depth), 0, NULL},
    {"hold", T_PYSSIZET, offsetof(ThreadState, hold), 0, NULL},
    {"pump_pending", T_BOOL, offsetof(ThreadState, pump_pending), 0, NULL},
    {NULL}
};

static PyTypeObject ThreadState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._core._driver_c.ThreadState",
    .tp_doc = "What one thread knows about the coroutines it is running.",
    .tp_basicsize = sizeof(ThreadState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ts_init,
    .tp_traverse = (traverseproc)ts_traverse,
    .tp_clear = (inquiry)ts_clear,
    .tp_dealloc = (destructor)ts_dealloc,
    .tp_members = ts_members,
};

/* The last thread's state, keyed by its interpreter thread id (unique for
 * the life of the process, unlike thread-state addresses), so that a run of
 * calls on one thread skips the thread-local lookup. */
static uint64_t cached_thread_id = 0;
static ThreadState *cached_state = NULL;

/* The calling thread's state (a new reference), as _impl.local.state. */
static ThreadState *
current_state(void)
{
    uint64_t id = PyThreadState_GetID(PyThreadState_Get());
    if (id == cached_thread_id && cached_state != NULL) {
        Py_INCREF(cached_state);
        return cached_state;
    }
    PyObject *st = PyObject_GetAttr(local_obj, str_state);
    if (st == NULL) {
        return NULL;
    }
    if (!Py_IS_TYPE(st, &ThreadState_Type)) {
        Py_DECREF(st);
        PyErr_SetString(PyExc_RuntimeError, "dneio: per-thread state has the wrong type");
        return NULL;
    }
    Py_INCREF(st);
    Py_XSETREF(cached_state, (ThreadState *)st);
    cached_thread_id = id;
    return (ThreadState *)st;
}

/* -------------------------------------------------------- NativeCore (k) */

typedef struct {
    PyObject_HEAD
    PyObject *coro;     /* None once resumed */
    PyObject *claimed;  /* the coroutine of a queued resumption */
} NativeCore;

static PyObject *
nc_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *coro = Py_None;
    if (!PyArg_ParseTuple(args, "|O:NativeContinuation", &coro)) {
        return NULL;
    }
    NativeCore *self = (NativeCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->coro = Py_NewRef(coro);
    self->claimed = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static int
nc_traverse(NativeCore *self, visitproc visit, void *arg)
{
    /* The heap subclass's own traverse visits the type. */
    Py_VISIT(self->coro);
    Py_VISIT(self->claimed);
    return 0;
}

static int
nc_clear(NativeCore *self)
{
    Py_CLEAR(self->coro);
    Py_CLEAR(self->claimed);
    return 0;
}

static void
nc_dealloc(NativeCore *self)
{
    /* Instances are of the Python subclass, whose dealloc releases the type. */
    PyObject_GC_UnTrack(self);
    nc_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A fresh continuation of ``coro`` (borrowed). */
static PyObject *
new_continuation(PyObject *coro)
{
    PyTypeObject *tp = (PyTypeObject *)continuation_type;
    NativeCore *k = (NativeCore *)tp->tp_alloc(tp, 0);
    if (k == NULL) {
        return NULL;
    }
    k->coro = Py_NewRef(coro);
    k->claimed = Py_NewRef(Py_None);
    return (PyObject *)k;
}

static int
queue_blocked(ThreadState *st)
{
    Py_ssize_t n = PyObject_Length(st->queue);
    if (n < 0) {
        PyErr_Clear();
        return 1;
    }
    return n > 0 || st->hold;
}

/* After a synchronous resumption at depth 1: run what was queued meanwhile. */
static PyObject *
finish(ThreadState *st, PyObject *answer)
{
    if (st->depth == 0 && !st->hold && PyObject_Length(st->queue) > 0) {
        if (answer == NULL) {
            /* Already failing: drain() names the queued errors in its notes. */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (tb != NULL && value != NULL) {
                PyException_SetTraceback(value, tb);
            }
            PyObject *r = PyObject_CallFunctionObjArgs(
                py_drain, (PyObject *)st, value ? value : Py_False, NULL);
            Py_XDECREF(r);
            if (r == NULL) {
                PyErr_Clear();
            }
            PyErr_Restore(type, value, tb);
        }
        else {
            PyObject *r = PyObject_CallFunctionObjArgs(py_drain, (PyObject *)st, Py_True, NULL);
            if (r == NULL) {
                Py_DECREF(answer);
                return NULL;
            }
            Py_DECREF(r);
        }
    }
    return answer;
}

/* One step of the native driver (drive() in _driver_py.py): send ``value`` into
 * ``coro`` and handle what it yields.  Unusual cases go to Python. */
static PyObject *
step(ThreadState *st, PyObject *coro, PyObject *value)
{
    PyObject *answer = NULL;
    PyObject *prev = st->driving;       /* owned by us while replaced */
    st->driving = Py_NewRef(coro);
    PyObject *yielded = NULL;
    PySendResult r = PyIter_Send(coro, value, &yielded);
    PyObject *current = st->driving;
    st->driving = prev;
    Py_DECREF(current);
    if (r == PYGEN_RETURN) {
        answer = yielded;
    }
    else if (r == PYGEN_NEXT) {
        if (yielded == shift_mark) {
            Py_DECREF(yielded);
            PyObject *func = st->request;
            st->request = Py_NewRef(Py_None);
            PyObject *k = new_continuation(coro);
            if (k == NULL) {
                Py_DECREF(func);
            }
            else {
                answer = PyObject_CallOneArg(func, k);
                if (answer == NULL) {
                    PyObject *type, *exc, *tb;
                    PyErr_Fetch(&type, &exc, &tb);
                    PyErr_NormalizeException(&type, &exc, &tb);
                    if (tb != NULL) {
                        PyException_SetTraceback(exc, tb);
                    }
                    answer = PyObject_CallFunctionObjArgs(
                        py_func_failed, (PyObject *)st, coro, k, func, exc, NULL);
                    Py_XDECREF(type);
                    Py_XDECREF(exc);
                    Py_XDECREF(tb);
                }
                Py_DECREF(k);
                Py_DECREF(func);
            }
        }
        else {
            answer = PyObject_CallFunctionObjArgs(
                py_after_foreign, (PyObject *)st, coro, yielded, NULL);
            Py_DECREF(yielded);
        }
    }
    return answer;
}

static PyObject *
nc_send(NativeCore *self, PyObject *value)
{
    PyObject *coro = self->coro;
    if (coro == NULL || coro == Py_None) {
        return PyObject_CallOneArg(py_spent, (PyObject *)self);
    }
    self->coro = Py_NewRef(Py_None);  /* we now own the reference to coro */
    ThreadState *st = current_state();
    if (st == NULL) {
        Py_DECREF(coro);
        return NULL;
    }
    PyObject *answer = NULL;
    if (st->depth >= max_depth || queue_blocked(st)) {
        Py_SETREF(self->claimed, coro);
        answer = PyObject_CallFunctionObjArgs(
            py_resume, (PyObject *)st, (PyObject *)self, Py_False, value, NULL);
        Py_DECREF(st);
        return answer;
    }
    /* While an entry hook is installed, it runs around every step of a
     * native coroutine (the hosts' Hosting.enter/leave: the coroutine's own
     * host task is made current). */
    PyObject *resumer = NULL;
    PyObject *hosting = NULL;
    if (entry_hook != Py_None) {
        hosting = Py_NewRef(entry_hook);
        resumer = PyObject_CallMethodObjArgs(hosting, str_enter, (PyObject *)st, coro, NULL);
        if (resumer == NULL) {
            Py_DECREF(hosting);
            Py_SETREF(self->claimed, coro);
            Py_DECREF(st);
            return NULL;
        }
        if (resumer == Py_None) {
            Py_CLEAR(resumer);
        }
    }
    st->depth += 1;
    answer = step(st, coro, value);
    if (resumer != NULL) {
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyObject *r = PyObject_CallMethodOneArg(hosting, str_leave, resumer);
        Py_DECREF(resumer);
        if (r == NULL) {
            Py_XDECREF(type);
            Py_XDECREF(exc);
            Py_XDECREF(tb);
            Py_CLEAR(answer);
        }
        else {
            Py_DECREF(r);
            PyErr_Restore(type, exc, tb);
        }
    }
    Py_XDECREF(hosting);
    st->depth -= 1;
    answer = finish(st, answer);
    Py_DECREF(st);
    Py_DECREF(coro);
    return answer;
}

static PyObject *
nc_get_coro(NativeCore *self, void *closure)
{
    return Py_NewRef(self->coro ? self->coro : Py_None);
}

static int
nc_set_coro(NativeCore *self, PyObject *value, void *closure)
{
    Py_XSETREF(self->coro, Py_NewRef(value ? value : Py_None));
    return 0;
}

static PyObject *
nc_get_claimed(NativeCore *self, void *closure)
{
    return Py_NewRef(self->claimed ? self->claimed : Py_None);
}

static int
nc_set_claimed(NativeCore *self, PyObject *value, void *closure)
{
    Py_XSETREF(self->claimed, Py_NewRef(value ? value : Py_None));
    return 0;
}

static PyGetSetDef nc_getset[] = {
    {"_coro", (getter)nc_get_coro, (setter)nc_set_coro, NULL, NULL},
    {"_claimed", (getter)nc_get_claimed, (setter)nc_set_claimed, NULL, NULL},
    {NULL}
};

static PyMethodDef nc_methods[] = {
    {"send", (PyCFunction)nc_send, METH_O,
     "Resume the coroutine, making its await shift(...) return value."},
    {NULL}
};

static PyTypeObject NativeCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._core._driver_c.NativeCore",
    .tp_doc = "The compiled part of a native continuation.",
    .tp_basicsize = sizeof(NativeCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = nc_new,
    .tp_traverse = (traverseproc)nc_traverse,
    .tp_clear = (inquiry)nc_clear,
    .tp_dealloc = (destructor)nc_dealloc,
    .tp_methods = nc_methods,
    .tp_getset = nc_getset,
};

/* ------------------------------------------------------------------ shift */

enum { SH_INIT, SH_NATIVE, SH_HOST, SH_DONE };

typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *gen;   /* the Python generator serving a host runner */
    int state;
} Shift;

static int
sh_traverse(Shift *self, visitproc visit, void *arg)
{
    Py_VISIT(self->func);
    Py_VISIT(self->gen);
    return 0;
}

static int
sh_clear(Shift *self)
{
    Py_CLEAR(self->func);
    Py_CLEAR(self->gen);
    return 0;
}

static void
sh_dealloc(Shift *self)
{
    PyObject_GC_UnTrack(self);
    sh_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject Shift_Type;

static PyObject *
shift_fn(PyObject *module, PyObject *func)
{
    Shift *self = PyObject_GC_New(Shift, &Shift_Type);
    if (self == NULL) {
        return NULL;
    }
    self->func = Py_NewRef(func);
    self->gen = NULL;
    self->state = SH_INIT;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PySendResult
sh_am_send(Shift *self, PyObject *arg, PyObject **result)
{
    switch (self->state) {
    case SH_INIT: {
        ThreadState *st = current_state();
        if (st == NULL) {
            self->state = SH_DONE;
            *result = NULL;
            return PYGEN_ERROR;
        }
        if (st->driving != Py_None) {
            /* Natively: hand func to the driver, which is waiting for the mark. */
            Py_SETREF(st->request, self->func);
            self->func = NULL;
            Py_DECREF(st);
            self->state = SH_NATIVE;
            *result = Py_NewRef(shift_mark);
            return PYGEN_NEXT;
        }
        Py_DECREF(st);
        PyObject *gen = PyObject_CallOneArg(py_host_shift, self->func);
        Py_CLEAR(self->func);
        if (gen == NULL) {
            self->state = SH_DONE;
            *result = NULL;
            return PYGEN_ERROR;
        }
        self->gen = gen;
        self->state = SH_HOST;
        arg = Py_None;
    }
    /* fall through */
    case SH_HOST: {
        PySendResult r = PyIter_Send(self->gen, arg, result);
        if (r != PYGEN_NEXT) {
            self->state = SH_DONE;
            Py_CLEAR(self->gen);
        }
        return r;
    }
    case SH_NATIVE:
        self->state = SH_DONE;
        *result = Py_NewRef(arg);
        return PYGEN_RETURN;
    default:
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited shift()");
        *result = NULL;
        return PYGEN_ERROR;
    }
}

static PyObject *
sh_await(PyObject *self)
{
    return Py_NewRef(self);
}

/* Finish with return value ``result`` (stolen) the iterator way: StopIteration.
 *
 * From CPython 3.12 on, an ``await`` of an object that is not a native
 * generator or coroutine no longer goes through am_send: the interpreter
 * calls tp_iternext when it sends None and the ``send`` method otherwise,
 * and takes the return value from StopIteration.  So this runs on every
 * resumption of a native shift there. */
static PyObject *
sh_stop(PyObject *result)
{
    if (result == Py_None) {
        /* NULL with no exception set means "finished, returning None" to
         * every caller of tp_iternext (the await, next(), for loops), and
         * costs no exception object. */
        Py_DECREF(result);
        return NULL;
    }
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, result);
    Py_DECREF(result);
    if (e != NULL) {
#if PY_VERSION_HEX >= 0x030C0000
        /* Consumed at once by the await: no context to chain. */
        PyErr_SetRaisedException(e);
#else
        PyErr_SetObject(PyExc_StopIteration, e);
        Py_DECREF(e);
#endif
    }
    return NULL;
}

static PyObject *
sh_iternext(Shift *self)
{
    PyObject *result;
    PySendResult r = sh_am_send(self, Py_None, &result);
    if (r == PYGEN_NEXT) {
        return result;
    }
    if (r == PYGEN_RETURN) {
        return sh_stop(result);
    }
    return NULL;
}

static PyObject *
sh_send(Shift *self, PyObject *arg)
{
    PyObject *result;
    PySendResult r = sh_am_send(self, arg, &result);
    if (r == PYGEN_NEXT) {
        return result;
    }
    if (r == PYGEN_RETURN) {
        if (result == Py_None) {
            /* A method call has no "finished" without an exception. */
            Py_DECREF(result);
            PyErr_SetNone(PyExc_StopIteration);
            return NULL;
        }
        return sh_stop(result);
    }
    return NULL;
}

static PyObject *
sh_throw(Shift *self, PyObject *args)
{
    if (self->state == SH_HOST) {
        PyObject *meth = PyObject_GetAttrString(self->gen, "throw");
        if (meth == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_Call(meth, args, NULL);
        Py_DECREF(meth);
        if (r == NULL) {
            self->state = SH_DONE;
            Py_CLEAR(self->gen);
        }
        return r;
    }
    self->state = SH_DONE;
    Py_CLEAR(self->func);
    PyObject *typ, *val = NULL, *tb = NULL;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) {
        return NULL;
    }
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "throw() takes an exception");
    }
    return NULL;
}

static PyObject *
sh_close(Shift *self, PyObject *unused)
{
    if (self->state == SH_HOST) {
        PyObject *r = PyObject_CallMethod(self->gen, "close", NULL);
        self->state = SH_DONE;
        Py_CLEAR(self->gen);
        return r;
    }
    self->state = SH_DONE;
    Py_CLEAR(self->func);
    Py_RETURN_NONE;
}

static PyMethodDef sh_methods[] = {
    {"send", (PyCFunction)sh_send, METH_O, NULL},
    {"throw", (PyCFunction)sh_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)sh_close, METH_NOARGS, NULL},
    {NULL}
};

static PyAsyncMethods sh_as_async = {
    .am_await = sh_await,
    .am_send = (sendfunc)sh_am_send,
};

static PyTypeObject Shift_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._core._driver_c.shift",
    .tp_doc = "An awaitable that suspends the current coroutine in shift(func).",
    .tp_basicsize = sizeof(Shift),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)sh_traverse,
    .tp_clear = (inquiry)sh_clear,
    .tp_dealloc = (destructor)sh_dealloc,
    .tp_as_async = &sh_as_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)sh_iternext,
    .tp_methods = sh_methods,
};

/* ------------------------------------------------------------------ module */

static PyObject *
setup(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "local", "shift_mark", "resume", "drain", "func_failed", "after_foreign",
        "spent", "continuation_type", "reset", "start_hosting", "max_depth", NULL};
    PyObject *a[10];
    Py_ssize_t depth;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOn:setup", kwlist,
                                     &a[0], &a[1], &a[2], &a[3], &a[4], &a[5],
                                     &a[6], &a[7], &a[8], &a[9], &depth)) {
        return NULL;
    }
    Py_XSETREF(py_entry_probe, Py_NewRef(a[9]));
    Py_XSETREF(py_reset, Py_NewRef(a[8]));
    Py_XSETREF(local_obj, Py_NewRef(a[0]));
    Py_XSETREF(shift_mark, Py_NewRef(a[1]));
    Py_XSETREF(py_resume, Py_NewRef(a[2]));
    Py_XSETREF(py_drain, Py_NewRef(a[3]));
    Py_XSETREF(py_func_failed, Py_NewRef(a[4]));
    Py_XSETREF(py_after_foreign, Py_NewRef(a[5]));
    Py_XSETREF(py_spent, Py_NewRef(a[6]));
    Py_XSETREF(continuation_type, Py_NewRef(a[7]));
    max_depth = depth;
    Py_RETURN_NONE;
}

static PyObject *
reset_fn(PyObject *module, PyObject *coro)
{
    if (!PyCoro_CheckExact(coro)) {
        return PyObject_CallOneArg(py_reset, coro);
    }
    if (entry_hook == Py_None && probe_module != Py_None) {
        /* probe_module: a tuple of module names; is any of them loaded? */
        PyObject *modules = PyImport_GetModuleDict();
        PyObject *found = NULL;
        for (Py_ssize_t i = 0; found == NULL && i < PyTuple_GET_SIZE(probe_module); i++) {
            found = PyDict_GetItemWithError(modules, PyTuple_GET_ITEM(probe_module, i));
            if (found == NULL && PyErr_Occurred()) {
                return NULL;
            }
        }
        if (found != NULL) {
            /* The probed host is loaded: let it install its entry hook if it needs one. */
            PyObject *r = PyObject_CallNoArgs(py_entry_probe);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        else if (PyErr_Occurred()) {
            return NULL;
        }
    }
    ThreadState *st = current_state();
    if (st == NULL) {
        return NULL;
    }
    if (st->depth >= max_depth || entry_hook != Py_None) {
        Py_DECREF(st);
        return PyObject_CallOneArg(py_reset, coro);
    }
    Py_INCREF(coro);
    st->depth += 1;
    PyObject *answer = step(st, coro, Py_None);
    st->depth -= 1;
    answer = finish(st, answer);
    Py_DECREF(st);
    Py_DECREF(coro);
    return answer;
}

static PyObject *
set_host_shift(PyObject *module, PyObject *value)
{
    Py_XSETREF(py_host_shift, Py_NewRef(value));
    Py_RETURN_NONE;
}

static PyObject *
set_entry_hook(PyObject *module, PyObject *value)
{
    Py_XSETREF(entry_hook, Py_NewRef(value));
    Py_RETURN_NONE;
}

static PyObject *
set_entry_probe_module(PyObject *module, PyObject *value)
{
    if (value != Py_None) {
        int ok = PyTuple_Check(value);
        for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(value); i++) {
            ok = PyUnicode_Check(PyTuple_GET_ITEM(value, i));
        }
        if (!ok) {
            PyErr_SetString(PyExc_TypeError, "the probed modules must be a tuple of str, or None");
            return NULL;
        }
    }
    Py_XSETREF(probe_module, Py_NewRef(value));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "Register the Python objects the compiled core hands unusual cases to."},
    {"set_entry_hook", set_entry_hook, METH_O, "Mirror _driver_py.entry_hook."},
    {"set_entry_probe_module", set_entry_probe_module, METH_O,
     "Mirror _driver_py.entry_probe_module."},
    {"reset", reset_fn, METH_O,
     "reset(coro)\n--\n\n"
     "Run coro now, on this thread, until it finishes or suspends in shift.\n\n"
     "Returns the coroutine's return value if it finished, or else the answer:\n"
     "the value returned by the func passed to the shift it is suspended in.\n"
     "Exceptions raised by the coroutine propagate out of reset.\n\n"
     "reset is a plain function and needs no event loop; it may be called from\n"
     "inside trio or asyncio tasks, where it starts an independent coroutine."},
    {"set_host_shift", set_host_shift, METH_O, "Register the host runners' shift."},
    {"shift", shift_fn, METH_O,
     "shift(func)\n--\n\n"
     "Suspend the current coroutine and call func(k) with its continuation k.\n\n"
     "await shift(func) returns the value k is resumed with (or raises the\n"
     "exception thrown into it). If func resumes k before it returns, the\n"
     "coroutine does not suspend at all. If func raises before resuming k,\n"
     "the exception is raised at the await and k is spent.\n\n"
     "The continuation extends to the nearest delimiter: under dneio.reset\n"
     "(natively) that is the coroutine reset or the last resumption started;\n"
     "under trio or asyncio it is the current task."},
    {NULL}
};

static struct PyModuleDef driver_c_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dneio._core._driver_c",
    .m_doc = "The compiled hot path of dneio's native runner.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__driver_c(void)
{
    if (PyType_Ready(&ThreadState_Type) < 0 || PyType_Ready(&NativeCore_Type) < 0
        || PyType_Ready(&Shift_Type) < 0) {
        return NULL;
    }
    str_state = PyUnicode_InternFromString("state");
    probe_module = Py_NewRef(Py_None);
    str_enter = PyUnicode_InternFromString("enter");
    str_leave = PyUnicode_InternFromString("leave");
    entry_hook = Py_NewRef(Py_None);
    PyObject *m = PyModule_Create(&driver_c_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "ThreadState", (PyObject *)&ThreadState_Type) < 0
        || PyModule_AddObjectRef(m, "NativeCore", (PyObject *)&NativeCore_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
