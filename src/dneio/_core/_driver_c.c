/* The compiled native core of dneio: the hot path of shift and of resuming a
 * native continuation.
 *
 * It mirrors, step for step, the pure-Python twin in _driver_py.py, which
 * stays the reference: everything unusual (a queued or trampolined
 * resumption, the entry hook, a func that fails, a foreign await,
 * host runners) is handed back to the Python functions registered with
 * setup().  Per-thread state is the ThreadState type defined here, which
 * _impl.py uses in place of its Python twin (_run_context.py).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_driver_c_api.h"
#include "_fast_reads.h"

/* Where the coroutine struct is known to carry its frame state (3.11 to 3.13),
 * reset() tells a coroutine that has not started from one that has without
 * a Python call; elsewhere the Python reset() checks. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define DNEIO_FRAME_STATE 1
#endif

/* Where _Py_NewReference is known to be exported (up to 3.13), the two
 * objects every shift makes (the shift and the continuation) are kept for
 * reuse once released, up to FREE_MAX of each, as CPython keeps its own
 * frequent objects; elsewhere they are freed and allocated as usual.  The
 * core relies on the GIL (single-phase init re-enables it on free-threaded
 * builds), which the free lists do too. */
/* What the Python side of this version expects (_impl.CORE_API): a build
 * left from another version is not used. */
#define DNEIO_CORE_API 6

#if PY_VERSION_HEX < 0x030E0000
#define DNEIO_FREE_LISTS 1
#define FREE_MAX 64
#endif

/* The error a StopIteration comes out of an await as (see stop_out_as_error;
 * _driver_py.STOP_MESSAGE is the same). */
#define STOP_MESSAGE \
    "StopIteration was raised into an await, where it would read as the await returning: " \
    "it is this error's __cause__"

/* Python objects registered by setup(). */
static PyObject *local_obj = NULL;      /* _impl.local */
static PyObject *shift_mark = NULL;     /* _driver_py.SHIFT (its repr explains a misrouted shift) */
static PyObject *py_func_failed = NULL; /* _driver_py._func_failed(st, coro, k, func, exc) */
static PyObject *py_after_foreign = NULL; /* _driver_py._after_foreign(st, coro, ctx, yielded) */
static PyObject *py_spent = NULL;       /* _driver_py._raise_spent(k) */
static PyObject *py_host_shift = NULL;  /* _registry.shift_in_task(func, skip) */
static PyObject *host_shift_skip = NULL; /* the skip it is called with */
/* What shift_in_task asks on its hot path, pushed by the registry whenever
 * it changes (set_hosts): the shift_if_in_task of each loaded host in
 * order, and the modules whose appearance sends a shift to the registry's
 * Python (a host not loaded yet, a nesting host).  NULL: always ask Python. */
static PyObject *hosts_shift = NULL;
static PyObject *hosts_watch = NULL;
static PyObject *no_runner_message = NULL; /* what shift says when no host serves it */
static PyObject *continuation_type = NULL; /* _driver_py.NativeContinuation */
static PyObject *entry_hook = NULL;     /* _driver_py.entry_hook (None or an object) */
/* The compiled hook types the host parts registered (add_hook_type), and
 * the entry hook's own enter and leave when it is of one of them. */
static struct {
    PyTypeObject *type;
    HookEnterFn enter;
    HookLeaveFn leave;
} hook_types[4];
static int n_hook_types = 0;
static HookEnterFn entry_enter = NULL;
static HookLeaveFn entry_leave = NULL;
static Py_ssize_t max_depth = 40;
static PyObject *str_state = NULL;
static PyObject *py_reset = NULL;       /* _driver_py.py_reset, for everything unusual */
static PyObject *py_entry_probe = NULL; /* calls _driver_py.entry_probe */
static PyObject *probe_module = NULL;  /* _driver_py.entry_probe_module, or None */
static PyObject *py_run_cancel_callbacks = NULL; /* _driver_py._run_cancel_callbacks(callbacks) */
/* The frame state of a coroutine that has not started yet (learnt in setup()). */
static int created_state = 0;
static int created_state_known = 0;
static PyObject *str_enter = NULL;
static PyObject *str_leave = NULL;

/* ---------------------------------------------------------------- ThreadState */

/* ThreadState: the struct is in _driver_c_api.h. */

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
    Py_VISIT(self->queue);
    Py_VISIT(self->entry_host);
    return 0;
}

static int
ts_clear(ThreadState *self)
{
    Py_CLEAR(self->driving);
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

/* The calling thread's state, looked up in _impl.local (a new reference). */
static ThreadState *
state_from_local(uint64_t id)
{
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

/* The calling thread's state (a new reference), as _impl.local.state. */
static inline ThreadState *
state_now(void)
{
    /* The id read at its field: PyThreadState_GetID is a call for the same read. */
    uint64_t id = PyThreadState_Get()->id;
    if (id == cached_thread_id && cached_state != NULL) {
        Py_INCREF(cached_state);
        return cached_state;
    }
    return state_from_local(id);
}

/* The same, for the other extensions (through the capsule). */
static ThreadState *
current_state(void)
{
    return state_now();
}

/* The length of a thread's queue of resumptions: a deque's own size field
 * where module init found that it is its length, else len(). */
static PyTypeObject *deque_type = NULL;

static inline Py_ssize_t
queue_len(PyObject *queue)
{
    if (Py_IS_TYPE(queue, deque_type)) {
        return Py_SIZE(queue);
    }
    return PyObject_Length(queue);
}

/* Is a deque's size field its length?  Sets deque_type if so. */
static int
check_deque_size(void)
{
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return -1;
    }
    PyObject *d = PyObject_CallMethod(collections, "deque", "((iii))", 1, 2, 3);
    Py_DECREF(collections);
    if (d == NULL) {
        return -1;
    }
    int ok = Py_SIZE(d) == 3 && PyObject_Length(d) == 3;
    PyObject *r = ok ? PyObject_CallMethod(d, "clear", NULL) : NULL;
    if (r == NULL) {
        PyErr_Clear();
        ok = 0;
    }
    Py_XDECREF(r);
    ok = ok && Py_SIZE(d) == 0 && PyObject_Length(d) == 0;
    if (ok) {
        deque_type = (PyTypeObject *)Py_NewRef((PyObject *)Py_TYPE(d));
    }
    Py_DECREF(d);
    return 0;
}

/* ------------------------------------------------------------------ shift */

/* The awaitable of shift(func).  Natively it yields itself to the driver,
 * which takes func from it and hands the continuation a reference to it:
 * the shift object is where the continuation's on_cancel callbacks wait,
 * and where closing the coroutine (which closes the shift it is suspended
 * in) is noticed. */
enum {
    SH_INIT,     /* created: obj is func */
    SH_YIELDED,  /* natively, yielded itself to the driver: obj is still func */
    SH_PARKED,   /* the driver took func: obj is the on_cancel callbacks (a list) or NULL */
    SH_HOST,     /* served by a host runner: obj is its generator */
    SH_DONE,     /* resumed, or over: obj is NULL */
    SH_CLOSED,   /* the coroutine was closed while parked here: obj is NULL */
    SH_FILLED,   /* resumed with obj, the value it returns (see fill_park) */
};

typedef struct {
    PyObject_HEAD
    PyObject *obj;  /* what the state says (one slot keeps a parked coroutine small) */
    int state;
} Shift;

static PyTypeObject Shift_Type;

#if PY_VERSION_HEX >= 0x030C0000
/* The StopIteration of the last resumption with a value, kept for the next
 * one while nothing else holds it (on 3.12 and later every such resumption
 * raises one, and making it is most of the cost).  step() empties it once
 * the coroutine has run on, so that it keeps no value alive. */
static PyObject *spare_stop = NULL;
/* Native steps in progress on this thread.  Each empties the spare
 * StopIteration when it ends (step_impl); a value may go in it only while
 * one is in progress on the thread that takes the value. */
#if defined(__GNUC__) && defined(__ELF__)
/* Read at every resumption with a value: the initial-exec model makes it one
 * load, where the default calls into the dynamic loader. */
static _Thread_local int steps_running __attribute__((tls_model("initial-exec"))) = 0;
#else
static _Thread_local int steps_running = 0;
#endif

/* May ``args`` be refilled in place: a one-tuple only its exception holds?
 * Not from 3.14 on, where a tuple keeps its hash once computed. */
static inline int
refillable(PyObject *args)
{
#if PY_VERSION_HEX < 0x030E0000
    return args != NULL && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) == 1
           && Py_REFCNT(args) == 1;
#else
    (void)args;
    return 0;
#endif
}

/* Put ``item`` in the one-tuple ``args``; what it held (a reference the
 * caller releases).  The collector may have stopped tracking the tuple
 * while it held only atomic items: it tracks it again when the new item
 * is one the collector follows, as CPython does when it refills a result
 * tuple (a tuple of atomic items is one it may leave untracked). */
static inline PyObject *
refill(PyObject *args, PyObject *item)
{
    PyObject *old = PyTuple_GET_ITEM(args, 0);
    PyTuple_SET_ITEM(args, 0, Py_NewRef(item));
    if (PyType_IS_GC(Py_TYPE(item)) && !PyObject_GC_IsTracked(args)) {
        PyObject_GC_Track(args);
    }
    return old;
}

/* Make the spare StopIteration ``e`` carry ``value`` (as its value and its
 * args), releasing what it held last, once it is whole: that may run a
 * finalizer that resumes something and comes back here.  The caller holds
 * a reference of its own besides the spare's, so that such a finalizer
 * finds the spare taken.  0, or -1 (e unchanged).  Inlined: it is on
 * every resumption with a value. */
static inline Py_ALWAYS_INLINE int
set_stop_value(PyBaseExceptionObject *e, PyObject *value)
{
    PyObject *old_value = ((PyStopIterationObject *)e)->value;
    PyObject *old_args = e->args, *old_item = NULL;
    if (refillable(old_args)) {
        /* Its own one-tuple, which no one else has seen: refilled in
         * place, as CPython's own iterators refill a result tuple. */
        old_item = refill(old_args, value);
        old_args = NULL;
    }
    else {
        PyObject *args = PyTuple_Pack(1, value);
        if (args == NULL) {
            return -1;
        }
        e->args = args;
    }
    ((PyStopIterationObject *)e)->value = Py_NewRef(value);
    Py_XDECREF(old_value);
    Py_XDECREF(old_item);
    Py_XDECREF(old_args);
    return 0;
}

/* Outside a native step nothing would empty the spare, so a value goes in
 * a StopIteration of its own, which lets the value go when the await (or
 * whoever caught it) releases it.  These are of a subclass whose released
 * instances are kept for reuse, one at a time, as CPython keeps its own
 * frequent objects: making a StopIteration the usual way costs more than
 * the rest of a host task's shift. */
static PyTypeObject *own_stop_type = NULL;  /* that subclass */
#ifdef DNEIO_FREE_LISTS
static PyBaseExceptionObject *free_own_stop = NULL; /* released, untracked, holding its type */
#endif

static void
own_stop_dealloc(PyObject *op)
{
    PyBaseExceptionObject *e = (PyBaseExceptionObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
#ifdef DNEIO_FREE_LISTS
    if (free_own_stop == NULL && e->dict == NULL && e->notes == NULL && e->traceback == NULL
        && e->context == NULL && e->cause == NULL && refillable(e->args)) {
        /* Releasing the value may run code, which cannot reach this
         * object (untracked, no references) but may fill the free slot.
         * (Refilled in place: this cannot fail.) */
        set_stop_value(e, Py_None);
        if (free_own_stop == NULL) {
            free_own_stop = e;
            return;
        }
    }
#endif
    ((PyTypeObject *)PyExc_StopIteration)->tp_dealloc(op);
    Py_DECREF(tp);
}

/* A StopIteration (of that subclass) carrying ``value``. */
static PyObject *
own_stop(PyObject *value)
{
    PyBaseExceptionObject *e;
#ifdef DNEIO_FREE_LISTS
    if (free_own_stop != NULL) {
        e = free_own_stop;
        free_own_stop = NULL;
        _Py_NewReference((PyObject *)e);
        set_stop_value(e, value);  /* it was emptied to None in place: cannot fail */
        e->suppress_context = 0;
        PyObject_GC_Track(e);
        return (PyObject *)e;
    }
#endif
    e = (PyBaseExceptionObject *)own_stop_type->tp_alloc(own_stop_type, 0);  /* fields NULL */
    if (e == NULL) {
        return NULL;
    }
    if (set_stop_value(e, value) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    return (PyObject *)e;
}

/* Make the subclass. */
static int
make_own_stop_type(void)
{
    /* No slots: its instances are exactly StopIteration's (no weak references). */
    PyObject *dict = Py_BuildValue("{s:()}", "__slots__");
    if (dict == NULL) {
        return -1;
    }
    PyObject *tp = PyErr_NewException("dneio._core._driver_c.StopIteration",
                                      PyExc_StopIteration, dict);
    Py_DECREF(dict);
    if (tp == NULL) {
        return -1;
    }
    if (((PyTypeObject *)tp)->tp_basicsize != ((PyTypeObject *)PyExc_StopIteration)->tp_basicsize) {
        Py_DECREF(tp);
        PyErr_SetString(PyExc_SystemError, "dneio: a StopIteration subclass grew");
        return -1;
    }
    own_stop_type = (PyTypeObject *)tp;
    own_stop_type->tp_dealloc = own_stop_dealloc;
    return 0;
}

static PyObject *
stop_iteration(PyObject *value)
{
    PyBaseExceptionObject *e = (PyBaseExceptionObject *)spare_stop;
    if (e != NULL && Py_REFCNT(e) == 1 && e->dict == NULL && e->notes == NULL
        && e->traceback == NULL && e->context == NULL && e->cause == NULL) {
        Py_INCREF(e);  /* the one it returns */
        if (set_stop_value(e, value) < 0) {
            Py_DECREF(e);
            return NULL;
        }
        e->suppress_context = 0;
        return (PyObject *)e;
    }
    PyObject *fresh = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (fresh != NULL) {
        Py_XSETREF(spare_stop, Py_NewRef(fresh));
    }
    return fresh;
}

/* Let the spare StopIteration go of the value it carried. */
static inline Py_ALWAYS_INLINE void
empty_spare_stop(void)
{
    PyBaseExceptionObject *e = (PyBaseExceptionObject *)spare_stop;
    if (e != NULL && ((PyStopIterationObject *)e)->value != Py_None) {
        int emptied = 0;
        if (Py_REFCNT(e) == 1) {
            Py_INCREF(e);
            emptied = set_stop_value(e, Py_None) == 0;
            Py_DECREF(e);
        }
        if (!emptied) {
            Py_CLEAR(spare_stop);  /* someone kept it (it is theirs now), or no memory */
        }
    }
}
#else
static inline void
empty_spare_stop(void)
{
}
#endif


/* Is ``park`` (a continuation's shift) one whose coroutine was closed? */
static inline int
park_closed(PyObject *park)
{
    return park != NULL && Py_IS_TYPE(park, &Shift_Type) && ((Shift *)park)->state == SH_CLOSED;
}

/* ------------------------------------- continuations called from Python
 *
 * A continuation is usually handed to code that calls it: ``callback(value)``.
 * Through tp_call, that call packs the value into a tuple first.  The
 * continuations have a vectorcall instead (the interpreter's direct call),
 * which takes the value as it is.  It honours whatever call the object's
 * class has now: the compiled one, one a host registered (add_call_one), or
 * else the class's tp_call (a Python __call__, say), with a tuple. */

#define MAX_CALL_ONES 4
static struct {
    ternaryfunc call;
    CallOneFn one;
} call_ones[MAX_CALL_ONES];
static int n_call_ones = 0;

/* The C API's add_call_one: where a continuation's class has ``call`` as
 * its tp_call, a call with one positional argument is ``one(k, value)``. */
static int
add_call_one(ternaryfunc call, CallOneFn one)
{
    for (int i = 0; i < n_call_ones; i++) {
        if (call_ones[i].call == call) {
            call_ones[i].one = one;
            return 0;
        }
    }
    if (n_call_ones == MAX_CALL_ONES) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: too many compiled continuation calls");
        return -1;
    }
    call_ones[n_call_ones].call = call;
    call_ones[n_call_ones].one = one;
    n_call_ones++;
    return 0;
}

/* The registered one-argument call for ``call``, or NULL. */
static inline CallOneFn
call_one_for(ternaryfunc call)
{
    for (int i = 0; i < n_call_ones; i++) {
        if (call_ones[i].call == call) {
            return call_ones[i].one;
        }
    }
    return NULL;
}

/* self(*args, **kwargs) through its class's tp_call, as the interpreter
 * calls an object without a vectorcall. */
static PyObject *
call_by_tp_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ternaryfunc call = Py_TYPE(self)->tp_call;
    if (call == NULL) {
        return PyErr_Format(PyExc_TypeError, "'%.200s' object is not callable",
                            Py_TYPE(self)->tp_name);
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *positional = PyTuple_New(nargs);
    if (positional == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(positional, i, Py_NewRef(args[i]));
    }
    PyObject *keywords = NULL;
    if (nkw > 0) {
        keywords = PyDict_New();
        for (Py_ssize_t i = 0; keywords != NULL && i < nkw; i++) {
            if (PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                Py_CLEAR(keywords);
            }
        }
        if (keywords == NULL) {
            Py_DECREF(positional);
            return NULL;
        }
    }
    PyObject *r = call(self, positional, keywords);
    Py_DECREF(positional);
    Py_XDECREF(keywords);
    return r;
}

/* ------------------------- deallocation of the package's Python subclasses
 *
 * A Python subclass of a compiled type is deallocated by CPython's generic
 * subtype_dealloc, which looks for the compiled base, goes through the
 * trashcan (a bound on the depth of nested deallocations) and checks for
 * an instance dict and slots of its own.  For a subclass that adds nothing
 * to its instances (no __dict__, no slots, no __del__ of the old kind),
 * own_methods installs owned_dealloc instead: the finaliser, if any, the
 * compiled base's dealloc, and the release of the type.  The trashcan is
 * used only when these deallocations are already nested deep. */

static destructor generic_subtype_dealloc = NULL; /* learnt from a probe class */
static int owned_depth = 0;  /* owned_dealloc calls in progress (GIL-protected) */
#define OWNED_DEPTH_MAX 50

static inline PyTypeObject *
compiled_base(PyTypeObject *tp)
{
    while (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        tp = tp->tp_base;
    }
    return tp;
}

/* Would the host continuation's finaliser do anything?  (hc_finalize) */
static int hc_must_finalize(PyObject *self);
typedef struct HostCore HostCore;
static int hc_clear(HostCore *self);
static void hc_finalize(PyObject *self);

static inline void
owned_release(PyObject *self, PyTypeObject *tp)
{
    destructor finalize = tp->tp_finalize;
    if (finalize != NULL && (finalize != hc_finalize || hc_must_finalize(self))) {
        if (!PyObject_GC_IsTracked(self)) {
            /* Come back from the trashcan: a finaliser that resurrects the
             * object leaves it tracked, as the generic deallocation does. */
            PyObject_GC_Track(self);
        }
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return;  /* resurrected */
        }
        tp = Py_TYPE(self);  /* the finaliser may have changed its class */
    }
    /* The base's dealloc untracks the object (if it still is) and frees it. */
    compiled_base(tp)->tp_dealloc(self);
    Py_DECREF(tp);
}

static void
owned_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (owned_depth < OWNED_DEPTH_MAX) {
        owned_depth++;
        owned_release(self, tp);
        owned_depth--;
        return;
    }
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, owned_dealloc)
    owned_release(self, tp);
    Py_TRASHCAN_END
}

#ifdef DNEIO_FREE_LISTS
/* The memory of released instances of these classes, kept for reuse by
 * size (their instances have nothing in front of them but the collector's
 * header, so any of them fits another of the same size).  An instance
 * whose finaliser ran is not kept: a new one must be finalised again. */
#define OWNED_MAX_SIZE 256  /* sizes are multiples of 8 below this */
#define OWNED_FREE_MAX 32
static struct {
    int n;
    PyObject *items[OWNED_FREE_MAX];
} owned_free_lists[OWNED_MAX_SIZE / 8];

static PyObject *
owned_alloc(PyTypeObject *tp, Py_ssize_t nitems)
{
    Py_ssize_t size = tp->tp_basicsize;
    if (nitems != 0 || owned_free_lists[size >> 3].n == 0) {
        return PyType_GenericAlloc(tp, nitems);
    }
    PyObject *op = owned_free_lists[size >> 3].items[--owned_free_lists[size >> 3].n];
    memset(op, 0, (size_t)size);
    /* What PyObject_Init does: its type (held), one reference. */
    Py_SET_TYPE(op, tp);
    Py_INCREF(tp);
    _Py_NewReference(op);
    PyObject_GC_Track(op);
    return op;
}

/* Free ``op`` (untracked, its fields cleared), or keep it for reuse if its
 * class takes instances from the free lists.  The compiled bases' deallocs
 * end with this instead of tp_free (which stays the collector's own, so
 * that __class__ assignment between these classes and others still works). */
static void
free_instance(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_ssize_t size = tp->tp_basicsize;
    if (tp->tp_alloc == owned_alloc && owned_free_lists[size >> 3].n < OWNED_FREE_MAX
        && !PyObject_GC_IsFinalized(op)) {
        owned_free_lists[size >> 3].items[owned_free_lists[size >> 3].n++] = op;
        return;
    }
    tp->tp_free(op);
}

/* Take instances of ``cls`` from the free lists, if they are small. */
static void
own_free_list(PyTypeObject *cls)
{
    if (cls->tp_alloc == PyType_GenericAlloc && cls->tp_free == PyObject_GC_Del
        && cls->tp_basicsize < OWNED_MAX_SIZE && cls->tp_basicsize % 8 == 0) {
        cls->tp_alloc = owned_alloc;
    }
}
#else
static void
free_instance(PyObject *op)
{
    Py_TYPE(op)->tp_free(op);
}
#endif

/* Can ``cls`` take owned_dealloc?  Its instances must be exactly its
 * compiled base's, garbage-collected, with the generic deallocation. */
static int
may_own_dealloc(PyTypeObject *cls)
{
    PyTypeObject *base = compiled_base(cls);
    unsigned long added = Py_TPFLAGS_MANAGED_DICT;
#ifdef Py_TPFLAGS_MANAGED_WEAKREF
    added |= Py_TPFLAGS_MANAGED_WEAKREF;
#endif
    return generic_subtype_dealloc != NULL && cls->tp_dealloc == generic_subtype_dealloc
           && (cls->tp_flags & Py_TPFLAGS_HEAPTYPE) && (cls->tp_flags & Py_TPFLAGS_HAVE_GC)
           && (base->tp_flags & Py_TPFLAGS_HAVE_GC) && !(cls->tp_flags & added)
           && cls->tp_basicsize == base->tp_basicsize && cls->tp_itemsize == 0
           && base->tp_itemsize == 0 && cls->tp_dictoffset == base->tp_dictoffset
           && cls->tp_weaklistoffset == base->tp_weaklistoffset && cls->tp_del == NULL
           && base->tp_dealloc != NULL;
}

/* Learn CPython's generic deallocation of Python classes. */
static int
learn_subtype_dealloc(void)
{
    PyObject *probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){}",
                                            "_dneio_probe", (PyObject *)&PyBaseObject_Type);
    if (probe == NULL) {
        return -1;
    }
    generic_subtype_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
    Py_DECREF(probe);
    return 0;
}

/* -------------------------------------------------------- NativeCore (k) */

/* A native continuation.  Its coroutine is in ``coro`` until it is resumed
 * (None after), or, while a resumption of it is queued, the coroutine of
 * that resumption (Python sees ``_claimed`` then, and ``_coro`` is None).
 * Which of the two it is, the continuation's vectorcall says: a parked
 * coroutine is one of the objects the program keeps the most of, and a
 * field of its own for that one bit would make each 8 bytes bigger. */
typedef struct {
    PyObject_HEAD
    PyObject *coro;     /* the coroutine, None once resumed, or the claimed one */
    PyObject *ctx;      /* the coroutine's own contextvars.Context (or None) */
    PyObject *park;     /* the shift the coroutine is suspended in (or None) */
    vectorcallfunc vectorcall;  /* k(value) from Python, with no tuple */
} NativeCore;

static PyObject *nc_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames);
static PyObject *nc_vectorcall_claimed(PyObject *self, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames);

/* Is coro the coroutine of a queued resumption? */
#define NC_CLAIMED(k) ((k)->vectorcall == nc_vectorcall_claimed)

/* Make ``coro`` (stolen) the claimed coroutine of k, whose coro is None. */
static inline void
nc_claim(NativeCore *k, PyObject *coro)
{
    Py_SETREF(k->coro, coro);
    k->vectorcall = nc_vectorcall_claimed;
}

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
    self->ctx = Py_NewRef(Py_None);
    self->park = Py_NewRef(Py_None);
    self->vectorcall = nc_vectorcall;
    return (PyObject *)self;
}

static int
nc_traverse(NativeCore *self, visitproc visit, void *arg)
{
    /* The heap subclass's own traverse visits the type. */
    Py_VISIT(self->coro);
    Py_VISIT(self->ctx);
    Py_VISIT(self->park);
    return 0;
}

static int
nc_clear(NativeCore *self)
{
    Py_CLEAR(self->coro);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->park);
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

#ifdef DNEIO_FREE_LISTS
/* Released continuations of continuation_type, each still holding the
 * reference to its type that allocation took. */
static NativeCore *free_continuations[FREE_MAX];
static int n_free_continuations = 0;

static void
flush_free_continuations(void)
{
    while (n_free_continuations > 0) {
        PyObject *k = (PyObject *)free_continuations[--n_free_continuations];
        PyTypeObject *tp = Py_TYPE(k);
        tp->tp_free(k);
        Py_DECREF(tp);
    }
}
#endif

/* The dealloc of continuation_type (the Python subclass, whose instances
 * have no __dict__ and no weak references, as setup checks): what
 * subtype_dealloc would do, with the free list. */
static inline void
nc_release(NativeCore *self, PyTypeObject *tp)
{
    nc_clear(self);
#ifdef DNEIO_FREE_LISTS
    if (n_free_continuations < FREE_MAX && (PyObject *)tp == continuation_type) {
        free_continuations[n_free_continuations++] = self;
        return;
    }
#endif
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Does clearing the fields of ``self`` free nothing, or only shifts that
 * hold nothing?  Each field's object must be held by more than the fields
 * that hold it (a field may share its object with another), unless it is
 * such a shift.  Then no chain of deallocations can start there. */
static inline int
survives_clearing(PyObject *o, PyObject *a, PyObject *b, PyObject *c)
{
    if (o == NULL || Py_REFCNT(o) > 3
        || (Py_IS_TYPE(o, &Shift_Type) && ((Shift *)o)->obj == NULL)) {
        return 1;
    }
    return Py_REFCNT(o) > (Py_ssize_t)((a == o) + (b == o) + (c == o));
}

static inline int
clearing_frees_nothing_more(NativeCore *self)
{
    PyObject *a = self->coro, *b = self->ctx, *c = self->park;
    return survives_clearing(a, a, b, c) && survives_clearing(b, a, b, c)
           && survives_clearing(c, a, b, c);
}

static void
nc_sub_dealloc(NativeCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (clearing_frees_nothing_more(self)) {
        /* A spent continuation, the common case: no chain of deallocations
         * can start here, so the trashcan (which bounds their depth) is
         * not needed. */
        nc_release(self, tp);
        return;
    }
    Py_TRASHCAN_BEGIN(self, nc_sub_dealloc)
    nc_release(self, tp);
    Py_TRASHCAN_END
}

/* A fresh continuation of ``coro`` in ``ctx``, suspended in ``park`` (all borrowed). */
static PyObject *
new_continuation(PyObject *coro, PyObject *ctx, PyObject *park)
{
    PyTypeObject *tp = (PyTypeObject *)continuation_type;
    NativeCore *k;
#ifdef DNEIO_FREE_LISTS
    if (n_free_continuations > 0) {
        /* It still holds its reference to the type: the new object has it.
         * Its fields were cleared when it was released. */
        k = free_continuations[--n_free_continuations];
        _Py_NewReference((PyObject *)k);
        PyObject_GC_Track(k);
    }
    else
#endif
    {
        k = (NativeCore *)tp->tp_alloc(tp, 0);
        if (k == NULL) {
            return NULL;
        }
    }
    k->coro = Py_NewRef(coro);
    k->ctx = Py_NewRef(ctx);
    k->park = Py_NewRef(park);
    k->vectorcall = nc_vectorcall;
    return (PyObject *)k;
}

static inline int
queue_blocked(ThreadState *st)
{
    Py_ssize_t n = queue_len(st->queue);
    if (n < 0) {
        PyErr_Clear();
        return 1;
    }
    return n > 0 || st->hold;
}

/* The queue's drain and resume (see "the queue, and holds on it" below). */
static PyObject *drain_impl(ThreadState *st, PyObject *reraise);
static PyObject *queue_resume(ThreadState *st, PyObject *k, PyObject *is_exc, PyObject *value);

/* finish(), where something was queued: drain it. */

static Py_NO_INLINE PyObject *
drain_after(ThreadState *st, PyObject *answer)
{
    if (answer == NULL) {
        /* Already failing: the queued errors are named in its notes. */
        PyObject *exc = take_exception();
        PyObject *r = drain_impl(st, exc != NULL ? exc : Py_False);
        Py_XDECREF(r);
        if (r == NULL) {
            PyErr_Clear();
        }
        give_exception(exc);
        return NULL;
    }
    PyObject *r = drain_impl(st, Py_True);
    if (r == NULL) {
        Py_DECREF(answer);
        return NULL;
    }
    Py_DECREF(r);
    return answer;
}

/* The compiled awaitables that pass what is sent into them on (C API). */
static struct {
    PyTypeObject *type;
    InnerFn inner;
} passing_types[8];
static int n_passing_types = 0;

static int
add_passing_type(PyTypeObject *type, InnerFn inner)
{
    if (type->tp_flags & Py_TPFLAGS_BASETYPE) {
        PyErr_Format(PyExc_TypeError, "dneio: a passing type (%s) must not be subclassable",
                     type->tp_name);
        return -1;
    }
    for (int i = 0; i < n_passing_types; i++) {
        if (passing_types[i].type == type) {
            passing_types[i].inner = inner;
            return 0;
        }
    }
    if (n_passing_types == (int)(sizeof(passing_types) / sizeof(passing_types[0]))) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: too many passing types");
        return -1;
    }
    passing_types[n_passing_types].type = (PyTypeObject *)Py_NewRef((PyObject *)type);
    passing_types[n_passing_types].inner = inner;
    n_passing_types += 1;
    return 0;
}

#if PY_VERSION_HEX >= 0x030C0000
/* Is ``coro`` awaiting ``park`` through nothing but coroutines and
 * generators (each of exactly its built-in type), every one suspended in an
 * ``await`` or ``yield from`` of the next, and the compiled awaitables
 * registered as passing values on?  Then a value sent into ``coro`` reaches
 * ``park`` as it is.  The getters of cr_await and gi_yieldfrom are called
 * directly: those types cannot be changed. */
static getter cr_await_get = NULL, gi_yieldfrom_get = NULL; /* found at import */

static void
find_await_getters(void)
{
    for (PyGetSetDef *g = PyCoro_Type.tp_getset; g != NULL && g->name != NULL; g++) {
        if (strcmp(g->name, "cr_await") == 0) {
            cr_await_get = g->get;
        }
    }
    for (PyGetSetDef *g = PyGen_Type.tp_getset; g != NULL && g->name != NULL; g++) {
        if (strcmp(g->name, "gi_yieldfrom") == 0) {
            gi_yieldfrom_get = g->get;
        }
    }
}

static int
passes_down_to(PyObject *coro, PyObject *park)
{
    if (cr_await_get == NULL || gi_yieldfrom_get == NULL) {
        return 0;
    }
    PyObject *o = Py_NewRef(coro);
    for (int depth = 0; depth < 16; depth++) {
        getter get = Py_IS_TYPE(o, &PyCoro_Type)  ? cr_await_get
                     : Py_IS_TYPE(o, &PyGen_Type) ? gi_yieldfrom_get
                                                  : NULL;
        PyObject *next;
        if (get != NULL) {
            next = get(o, NULL);
        }
        else {
            InnerFn inner = NULL;
            for (int i = 0; i < n_passing_types; i++) {
                if (Py_IS_TYPE(o, passing_types[i].type)) {
                    inner = passing_types[i].inner;
                }
            }
            if (inner == NULL) {
                break;
            }
            next = Py_XNewRef(inner(o));
            if (next == NULL) {
                break;
            }
        }
        Py_DECREF(o);
        if (next == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (next == park) {
            Py_DECREF(next);
            return 1;
        }
        o = next;
    }
    Py_DECREF(o);
    return 0;
}
#endif

/* Resuming ``coro``, parked in the shift ``park``, with ``value``: from
 * CPython 3.12 on, the interpreter sends a value other than None into an
 * awaited object that is not a coroutine by calling its ``send`` method by
 * name, a look-up and a method call for every resumption with a value.
 * None goes to tp_iternext directly.  So where the value would reach the
 * shift as it is (passes_down_to), the shift is given the value here and
 * None is sent instead; the shift returns the value it holds.  Returns the
 * value to send, and in *dropped what the shift held before (its on_cancel
 * callbacks, which a resumption drops), for unfill_park after the send. */
static inline PyObject *
fill_park(PyObject *coro, PyObject *park, PyObject *value, PyObject **dropped)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (park != NULL && value != Py_None && Py_IS_TYPE(park, &Shift_Type)
        && ((Shift *)park)->state == SH_PARKED && passes_down_to(coro, park)) {
        Shift *sh = (Shift *)park;
        *dropped = sh->obj;
        sh->obj = Py_NewRef(value);
        sh->state = SH_FILLED;
        return Py_None;
    }
#endif
    return value;
}

/* After the send: a shift still holding its value was never reached (the
 * coroutine failed before it got there), and is parked as it was, with its
 * on_cancel callbacks; else what it held before is let go. */
static inline void
unfill_park(PyObject *park, PyObject *dropped)
{
    Shift *sh = (Shift *)park;
    if (sh->state == SH_FILLED) {
        PyObject *value = sh->obj;
        sh->obj = dropped;
        sh->state = SH_PARKED;
        Py_DECREF(value);
    }
    else {
        Py_XDECREF(dropped);
    }
}

/* After a synchronous resumption at depth 1: run what was queued meanwhile. */
static inline PyObject *
finish(ThreadState *st, PyObject *answer)
{
    if (st->depth == 0 && !st->hold && queue_len(st->queue) > 0) {
        return drain_after(st, answer);
    }
    return answer;
}

/* One step of the native driver (drive() in _driver_py.py): send ``value`` into
 * ``coro``, in its context ``ctx``, and handle what it yields.  Unusual cases
 * go to Python.  ``park`` (or NULL) is the shift the coroutine is parked in,
 * to hand the value to (see fill_park): only from the send itself on, after
 * which no Python code runs before the shift takes it. */
static inline Py_ALWAYS_INLINE PyObject *
step_impl(ThreadState *st, PyObject *coro, PyObject *ctx, PyObject *value, PyObject *park)
{
    PyObject *answer = NULL;
    if (PyContext_Enter(ctx) < 0) {
        return NULL;
    }
    PyObject *prev = st->driving;       /* owned by us while replaced */
    st->driving = Py_NewRef(coro);
    PyObject *yielded = NULL;
    PyObject *dropped = NULL;
    PyObject *sent = park != NULL ? fill_park(coro, park, value, &dropped) : value;
    PyAsyncMethods *am = Py_TYPE(coro)->tp_as_async;
#if PY_VERSION_HEX >= 0x030C0000
    steps_running++;
#endif
    PySendResult r = am != NULL && am->am_send != NULL ? am->am_send(coro, sent, &yielded)
                                                       : PyIter_Send(coro, sent, &yielded);
#if PY_VERSION_HEX >= 0x030C0000
    steps_running--;
#endif
    if (park != NULL && sent != value) {
        /* Taken, or (if the coroutine never got to the shift) put back. */
        unfill_park(park, dropped);
    }
    empty_spare_stop();
    PyObject *current = st->driving;
    st->driving = prev;
    Py_DECREF(current);
    if (PyContext_Exit(ctx) < 0) {
        if (r != PYGEN_ERROR) {
            Py_DECREF(yielded);
        }
        return NULL;
    }
    if (r == PYGEN_RETURN) {
        answer = yielded;
    }
    else if (r == PYGEN_NEXT) {
        if (Py_IS_TYPE(yielded, &Shift_Type) && ((Shift *)yielded)->state == SH_YIELDED) {
            /* The coroutine suspended in shift(func): call func(k). */
            PyObject *func = ((Shift *)yielded)->obj;
            ((Shift *)yielded)->obj = NULL;
            ((Shift *)yielded)->state = SH_PARKED;
            PyObject *k = new_continuation(coro, ctx, yielded);
            Py_DECREF(yielded);
            if (k == NULL) {
                Py_DECREF(func);
            }
            else {
                answer = call_one(func, k);
                if (answer == NULL) {
                    PyObject *exc = take_exception();
                    answer = PyObject_CallFunctionObjArgs(
                        py_func_failed, (PyObject *)st, coro, k, func, exc, NULL);
                    Py_XDECREF(exc);
                }
                Py_DECREF(k);
                Py_DECREF(func);
            }
        }
        else {
            answer = PyObject_CallFunctionObjArgs(
                py_after_foreign, (PyObject *)st, coro, ctx, yielded, NULL);
            Py_DECREF(yielded);
        }
    }
    return answer;
}

static PyObject *
step(ThreadState *st, PyObject *coro, PyObject *ctx, PyObject *value)
{
    return step_impl(st, coro, ctx, value, NULL);
}

/* step() of a resumption with a value other than None (3.12 and later). */
static PyObject *
step_filling(ThreadState *st, PyObject *coro, PyObject *ctx, PyObject *value, PyObject *park)
{
    return step_impl(st, coro, ctx, value, park);
}

/* step(), with the entry hook around it: the hosts' Hosting.enter/leave,
 * which make the coroutine's own host task current.  On an error from
 * enter, nothing ran and *not_run is set. */
static Py_NO_INLINE PyObject *
entered_step(ThreadState *st, PyObject *coro, PyObject *ctx, PyObject *value, PyObject *park,
             int *not_run)
{
    PyObject *hosting = Py_NewRef(entry_hook);
    /* The hook's own leave, whatever the step does to the entry hook. */
    HookLeaveFn leave = entry_leave;
    PyObject *resumer = entry_enter != NULL
        ? entry_enter(hosting, (PyObject *)st, coro)
        : PyObject_CallMethodObjArgs(hosting, str_enter, (PyObject *)st, coro, NULL);
    if (resumer == NULL) {
        Py_DECREF(hosting);
        *not_run = 1;
        return NULL;
    }
    if (resumer == Py_None) {
        Py_DECREF(resumer);
        Py_DECREF(hosting);
        return park != NULL ? step_filling(st, coro, ctx, value, park) : step(st, coro, ctx, value);
    }
    PyObject *answer = park != NULL ? step_filling(st, coro, ctx, value, park)
                                    : step(st, coro, ctx, value);
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyObject *r = leave != NULL ? leave(hosting, resumer)
                                : PyObject_CallMethodOneArg(hosting, str_leave, resumer);
    Py_DECREF(resumer);
    Py_DECREF(hosting);
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
    return answer;
}

/* step(), with the entry hook around it while one is installed. */
static inline PyObject *
hooked_step(ThreadState *st, PyObject *coro, PyObject *ctx, PyObject *value, PyObject *park,
            int *not_run)
{
    *not_run = 0;
    if (entry_hook == Py_None) {
        return park != NULL ? step_filling(st, coro, ctx, value, park) : step(st, coro, ctx, value);
    }
    return entered_step(st, coro, ctx, value, park, not_run);
}

/* The rest of nc_send, where the coroutine runs now; ``fill`` says whether
 * the value goes to the shift it is parked in (see fill_park), a constant
 * at each call so that the resumption with None pays nothing for it. */
static inline Py_ALWAYS_INLINE PyObject *
run_native(NativeCore *self, ThreadState *st, PyObject *coro, PyObject *value, int fill)
{
    PyObject *ctx = Py_NewRef(self->ctx);
    int not_run;
    st->depth += 1;
    /* Held: the hook's Python code runs before the step. */
    PyObject *park = fill ? Py_NewRef(self->park) : NULL;
    PyObject *answer = hooked_step(st, coro, ctx, value, park, &not_run);
    Py_DECREF(ctx);
    Py_XDECREF(park);
    st->depth -= 1;
    if (not_run) {
        /* The hook failed before the coroutine ran: it stays claimed, not lost. */
        nc_claim(self, coro);
        Py_DECREF(st);
        return NULL;
    }
    answer = finish(st, answer);
    Py_DECREF(st);
    Py_DECREF(coro);
    return answer;
}

static PyObject *
nc_send(NativeCore *self, PyObject *value)
{
    PyObject *coro = self->coro;
    if (coro == NULL || coro == Py_None || NC_CLAIMED(self) || park_closed(self->park)) {
        /* Spent, or its coroutine was closed: the error says which. */
        return PyObject_CallOneArg(py_spent, (PyObject *)self);
    }
    self->coro = Py_NewRef(Py_None);  /* we now own the reference to coro */
    ThreadState *st = state_now();
    if (st == NULL) {
        Py_DECREF(coro);
        return NULL;
    }
    if (st->depth >= max_depth || queue_blocked(st)) {
        nc_claim(self, coro);
        PyObject *answer = queue_resume(st, (PyObject *)self, Py_False, value);
        Py_DECREF(st);
        return answer;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (value != Py_None) {
        return run_native(self, st, coro, value, 1);
    }
#endif
    return run_native(self, st, coro, value, 0);
}

static PyObject *
nc_is_cancelled(NativeCore *self, PyObject *unused)
{
    return Py_NewRef(park_closed(self->park) ? Py_True : Py_False);
}

static PyObject *
nc_on_cancel(NativeCore *self, PyObject *callback)
{
    if (!PyCallable_Check(callback)) {
        return PyErr_Format(PyExc_TypeError, "on_cancel() takes a callable, not %R", callback);
    }
    PyObject *park = self->park;
    if (park == NULL || !Py_IS_TYPE(park, &Shift_Type)) {
        Py_RETURN_NONE;  /* not suspended in a shift: never cancelled */
    }
    Shift *sh = (Shift *)park;
    if (sh->state == SH_CLOSED) {
        return PyObject_CallNoArgs(callback);
    }
    if (sh->state != SH_PARKED) {
        Py_RETURN_NONE;  /* resumed already: never cancelled */
    }
    if (sh->obj == NULL) {
        sh->obj = PyList_New(0);
        if (sh->obj == NULL) {
            return NULL;
        }
    }
    if (PyList_Append(sh->obj, callback) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* func raised before resuming: hand over the on_cancel callbacks registered
 * so far (a list, perhaps empty), for _driver_py._func_failed to run. */
static PyObject *
nc_take_callbacks(NativeCore *self, PyObject *unused)
{
    PyObject *park = self->park;
    if (park != NULL && Py_IS_TYPE(park, &Shift_Type) && ((Shift *)park)->state == SH_PARKED
        && ((Shift *)park)->obj != NULL && PyList_CheckExact(((Shift *)park)->obj)) {
        PyObject *callbacks = ((Shift *)park)->obj;
        ((Shift *)park)->obj = NULL;
        return callbacks;
    }
    return PyList_New(0);
}

static PyObject *
nc_park_resumed(NativeCore *self, PyObject *unused)
{
    /* Resumed with GeneratorExit thrown in: the shift will see GeneratorExit,
     * but as a resumption, not as the coroutine being closed. */
    PyObject *park = self->park;
    if (park != NULL && Py_IS_TYPE(park, &Shift_Type) && ((Shift *)park)->state == SH_PARKED) {
        ((Shift *)park)->state = SH_DONE;
        Py_CLEAR(((Shift *)park)->obj);
    }
    Py_RETURN_NONE;
}

#define NC_GETSET(name, field)                                                  \
    static PyObject *nc_get_##name(NativeCore *self, void *closure)             \
    {                                                                           \
        return Py_NewRef(self->field ? self->field : Py_None);                  \
    }                                                                           \
    static int nc_set_##name(NativeCore *self, PyObject *value, void *closure)  \
    {                                                                           \
        Py_XSETREF(self->field, Py_NewRef(value ? value : Py_None));            \
        return 0;                                                               \
    }

NC_GETSET(ctx, ctx)
NC_GETSET(park, park)

/* _coro and _claimed: the one field, as NC_CLAIMED says.  The core's
 * Python code never gives a continuation both at once. */
static PyObject *
nc_get_coro(NativeCore *self, void *closure)
{
    return Py_NewRef(self->coro != NULL && !NC_CLAIMED(self) ? self->coro : Py_None);
}

static PyObject *
nc_get_claimed(NativeCore *self, void *closure)
{
    return Py_NewRef(self->coro != NULL && NC_CLAIMED(self) ? self->coro : Py_None);
}

static int
nc_set_either(NativeCore *self, PyObject *value, int claimed)
{
    if (value == NULL) {
        value = Py_None;
    }
    if (value == Py_None) {
        if (NC_CLAIMED(self) == claimed) {
            Py_XSETREF(self->coro, Py_NewRef(Py_None));
            self->vectorcall = nc_vectorcall;
        }
        return 0;  /* clearing the other one: it is None already */
    }
    if (NC_CLAIMED(self) != claimed && self->coro != NULL && self->coro != Py_None) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dneio: a continuation holds either its coroutine or a claimed "
                        "one, never both");
        return -1;
    }
    Py_XSETREF(self->coro, Py_NewRef(value));
    self->vectorcall = claimed ? nc_vectorcall_claimed : nc_vectorcall;
    return 0;
}

static int
nc_set_coro(NativeCore *self, PyObject *value, void *closure)
{
    return nc_set_either(self, value, 0);
}

static int
nc_set_claimed(NativeCore *self, PyObject *value, void *closure)
{
    return nc_set_either(self, value, 1);
}

static PyGetSetDef nc_getset[] = {
    {"_coro", (getter)nc_get_coro, (setter)nc_set_coro, NULL, NULL},
    {"_claimed", (getter)nc_get_claimed, (setter)nc_set_claimed, NULL, NULL},
    {"_ctx", (getter)nc_get_ctx, (setter)nc_set_ctx, NULL, NULL},
    {"_park", (getter)nc_get_park, (setter)nc_set_park, NULL, NULL},
    {NULL}
};

/* k(value): the same as k.send(value), so that a continuation passed as a
 * callback is called without looking up __call__ on its Python subclass. */
static PyObject *
nc_call(NativeCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *value = only_argument(args, kwds, "a continuation", "continuation");
    if (value == NULL) {
        return NULL;
    }
    return nc_send(self, value);
}

/* k(value) from Python (see call_by_tp_call). */
static PyObject *
nc_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL
        && Py_TYPE(self)->tp_call == (ternaryfunc)nc_call) {
        return nc_send((NativeCore *)self, args[0]);
    }
    return call_by_tp_call(self, args, nargsf, kwnames);
}

/* The same, while a resumption is queued (NC_CLAIMED): the error, by the
 * class's call (a function of its own, so that the two stay apart). */
static PyObject *
nc_vectorcall_claimed(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return call_by_tp_call(self, args, nargsf, kwnames);
}

static PyMethodDef nc_methods[] = {
    {"send", (PyCFunction)nc_send, METH_O,
     "Resume the coroutine, making its await shift(...) return value."},
    {"is_cancelled", (PyCFunction)nc_is_cancelled, METH_NOARGS,
     "True once the coroutine was closed while suspended; resuming it is then an error."},
    {"on_cancel", (PyCFunction)nc_on_cancel, METH_O,
     "Call callback() once if the coroutine is closed while suspended (now, if it was)."},
    {"_park_resumed", (PyCFunction)nc_park_resumed, METH_NOARGS, NULL},
    {"_take_callbacks", (PyCFunction)nc_take_callbacks, METH_NOARGS, NULL},
    {NULL}
};

static PyTypeObject NativeCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._core._driver_c.NativeCore",
    .tp_doc = "The compiled part of a native continuation.",
    .tp_basicsize = sizeof(NativeCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
                | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(NativeCore, vectorcall),
    .tp_new = nc_new,
    .tp_traverse = (traverseproc)nc_traverse,
    .tp_clear = (inquiry)nc_clear,
    .tp_dealloc = (destructor)nc_dealloc,
    .tp_call = (ternaryfunc)nc_call,
    .tp_methods = nc_methods,
    .tp_getset = nc_getset,
};

/* ------------------------------------------------------- shift, continued */

static int
sh_traverse(Shift *self, visitproc visit, void *arg)
{
    Py_VISIT(self->obj);
    return 0;
}

static int
sh_clear(Shift *self)
{
    Py_CLEAR(self->obj);
    return 0;
}

#ifdef DNEIO_FREE_LISTS
static Shift *free_shifts[FREE_MAX];
static int n_free_shifts = 0;
#endif

static void
sh_dealloc(Shift *self)
{
    PyObject_GC_UnTrack(self);
    sh_clear(self);
#ifdef DNEIO_FREE_LISTS
    if (n_free_shifts < FREE_MAX && Py_IS_TYPE(self, &Shift_Type)) {
        free_shifts[n_free_shifts++] = self;
        return;
    }
#endif
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
shift_fn(PyObject *module, PyObject *func)
{
    Shift *self;
#ifdef DNEIO_FREE_LISTS
    if (n_free_shifts > 0) {
        self = free_shifts[--n_free_shifts];
        _Py_NewReference((PyObject *)self);
    }
    else
#endif
    {
        self = PyObject_GC_New(Shift, &Shift_Type);
    }
    if (self == NULL) {
        return NULL;
    }
    self->obj = Py_NewRef(func);
    self->state = SH_INIT;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *
reused_error(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "cannot reuse already awaited shift(): each shift(func) (and each "
                    "request(...) and other dneio operation built on it) can be awaited once; "
                    "call it again to wait again");
    return NULL;
}

/* The interpreter's sys.modules as last seen to hold none of the modules
 * the hot path watches for (compared by address only), and whether it has
 * changed since: from CPython 3.12 on a dict watcher says so, before that
 * the dict's version tag.  Until it changes, the check is not made again. */
static PyObject *clean_modules = NULL;
#if PY_VERSION_HEX >= 0x030C0000
static int modules_watcher = -2;  /* -2: not added yet; -1: none to be had */
static int modules_changed = 1;

static int
on_modules_change(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    modules_changed = 1;
    if (event == PyDict_EVENT_DEALLOCATED && dict == clean_modules) {
        /* Forgotten, so that a new dict at its address is looked at (and
         * watched) afresh. */
        clean_modules = NULL;
    }
    return 0;
}

static inline int
modules_still_clean(PyObject *modules)
{
    return modules == clean_modules && !modules_changed;
}

/* Clean as last seen, with no need to look at sys.modules again: the
 * watcher on it says it has not changed (nor been cleared or freed, which
 * it reports too) since. */
static inline int
modules_known_clean(void)
{
    return clean_modules != NULL && !modules_changed;
}

static void
modules_found_clean(PyObject *modules)
{
    if (modules_watcher == -2) {
        modules_watcher = PyDict_AddWatcher(on_modules_change);
        if (modules_watcher < 0) {
            PyErr_Clear();  /* every watcher is taken: check every time */
            modules_watcher = -1;
        }
    }
    if (modules_watcher < 0) {
        return;
    }
    if (modules != clean_modules) {
        if (PyDict_Watch(modules_watcher, modules) < 0) {
            PyErr_Clear();
            clean_modules = NULL;
            return;
        }
        clean_modules = modules;
    }
    modules_changed = 0;
}
#else
static uint64_t clean_modules_version = 0;

static inline int
modules_still_clean(PyObject *modules)
{
    return modules == clean_modules
           && ((PyDictObject *)modules)->ma_version_tag == clean_modules_version;
}

static void
modules_found_clean(PyObject *modules)
{
    clean_modules = modules;
    clean_modules_version = ((PyDictObject *)modules)->ma_version_tag;
}

/* Before 3.12 the version tag is the only witness: look every time. */
static inline int
modules_known_clean(void)
{
    return 0;
}
#endif

/* The hosts' compiled shift_if_in_task functions (add_host_shift): the
 * object the registry lists, and the C function that does what calling it
 * does. */
static struct {
    PyObject *obj;
    HostShiftFn fn;
} host_shifts[8];
static int n_host_shifts = 0;

static int
add_host_shift_entry(PyObject *obj, HostShiftFn fn)
{
    for (int i = 0; i < n_host_shifts; i++) {
        if (host_shifts[i].obj == obj) {
            host_shifts[i].fn = fn;
            return 0;
        }
    }
    if (n_host_shifts == (int)(sizeof(host_shifts) / sizeof(host_shifts[0]))) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: too many compiled host shifts");
        return -1;
    }
    host_shifts[n_host_shifts].obj = Py_NewRef(obj);
    host_shifts[n_host_shifts].fn = fn;
    n_host_shifts += 1;
    return 0;
}

/* The compiled function registered for ``obj``, or NULL. */
static HostShiftFn
compiled_shift_of(PyObject *obj)
{
    HostShiftFn fn = NULL;
    for (int j = 0; j < n_host_shifts; j++) {
        if (host_shifts[j].obj == obj) {
            fn = host_shifts[j].fn;
        }
    }
    return fn;
}

/* The compiled function of each of hosts_shift's items, in its order (NULL
 * for one that has none), worked out whenever either changes; for
 * resolved_for, the tuple it was worked out for (NULL: none, or a tuple
 * too long to fit). */
static HostShiftFn resolved_fns[8];
static PyObject *resolved_for = NULL;

static void
resolve_host_shifts(void)
{
    resolved_for = NULL;
    if (hosts_shift == NULL
        || PyTuple_GET_SIZE(hosts_shift) > (Py_ssize_t)(sizeof(resolved_fns) / sizeof(resolved_fns[0]))) {
        return;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(hosts_shift); i++) {
        resolved_fns[i] = compiled_shift_of(PyTuple_GET_ITEM(hosts_shift, i));
    }
    resolved_for = hosts_shift;
}

static int
add_host_shift(PyObject *obj, HostShiftFn fn)
{
    int r = add_host_shift_entry(obj, fn);
    resolve_host_shifts();
    return r;
}

/* What a host's shift_if_in_task returned, as a HostShiftFn gives it: None
 * (0), (value,) (2, *result the value), or the body to run (1). */
static inline int
host_shift_result(PyObject *body, PyObject **result)
{
    if (body == NULL) {
        return -1;
    }
    if (body == Py_None) {
        Py_DECREF(body);
        return 0;
    }
    if (PyTuple_CheckExact(body) && PyTuple_GET_SIZE(body) == 1) {
        *result = Py_NewRef(PyTuple_GET_ITEM(body, 0));
        Py_DECREF(body);
        return 2;
    }
    *result = body;
    return 1;
}

/* _registry.shift_in_task(func, skip): its hot path, where nothing it
 * watches for is loaded, here; else the registry's Python.  As a
 * HostShiftFn: 0 where no host runs a task here. */
static int
host_shift(PyObject *func, ThreadState *st, PyObject **result)
{
    PyObject *shifts = hosts_shift;
    if (shifts != NULL) {
        /* Held: set_hosts may replace it meanwhile. */
        Py_INCREF(shifts);
        int python = 0;
        if (!modules_known_clean()) {
            /* The interpreter's own sys.modules (borrowed): what imports fill in. */
            PyObject *modules = PyImport_GetModuleDict();
            python = modules == NULL || !PyDict_CheckExact(modules);
            int clean = !python && modules_still_clean(modules);
            PyObject *watch = Py_NewRef(hosts_watch); /* held, as shifts is */
            for (Py_ssize_t i = 0; !python && !clean && i < PyTuple_GET_SIZE(watch); i++) {
                int found = PyDict_Contains(modules, PyTuple_GET_ITEM(watch, i));
                if (found < 0) {
                    Py_DECREF(watch);
                    Py_DECREF(shifts);
                    return -1;
                }
                python = found;
            }
            Py_DECREF(watch);
            if (!python && !clean) {
                modules_found_clean(modules);
            }
        }
        if (python) {
            Py_DECREF(shifts);
        }
        else {
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shifts); i++) {
                PyObject *shift_here = PyTuple_GET_ITEM(shifts, i);
                /* (Still the tuple they were worked out for: held, it cannot
                 * have been replaced by another at its address.) */
                HostShiftFn fn = shifts == resolved_for ? resolved_fns[i]
                                                        : compiled_shift_of(shift_here);
                int r = fn != NULL ? fn(func, st, result)
                                   : host_shift_result(PyObject_CallOneArg(shift_here, func), result);
                if (r != 0) {
                    Py_DECREF(shifts);
                    return r;
                }
            }
            Py_DECREF(shifts);
            return 0;
        }
    }
    PyObject *call_args[2] = {func, host_shift_skip};
    return host_shift_result(PyObject_Vectorcall(py_host_shift, call_args, 2, NULL), result);
}

/* A StopIteration raised out of the await would be read as the await's
 * return (its value the result): it comes out as a RuntimeError whose cause
 * it is, as PEP 479 has it for generators.  Called with an error set. */
static void
stop_out_as_error(void)
{
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return;
    }
    PyObject *stop = take_exception();
    PyObject *error = PyObject_CallFunction(PyExc_RuntimeError, "s", STOP_MESSAGE);
    if (error == NULL) {
        Py_XDECREF(stop);
        return;  /* that error instead */
    }
    if (stop != NULL) {
        PyException_SetContext(error, Py_NewRef(stop));
        PyException_SetCause(error, stop);  /* steals it */
    }
    PyErr_SetObject(PyExc_RuntimeError, error);
    Py_DECREF(error);
}

static PySendResult
sh_am_send(Shift *self, PyObject *arg, PyObject **result)
{
    switch (self->state) {
    case SH_INIT: {
        ThreadState *st = state_now();
        if (st == NULL) {
            self->state = SH_DONE;
            *result = NULL;
            return PYGEN_ERROR;
        }
        if (st->driving != Py_None) {
            /* Natively: hand ourselves (and func) to the driver. */
            Py_DECREF(st);
            self->state = SH_YIELDED;
            *result = Py_NewRef(self);
            return PYGEN_NEXT;
        }
        PyObject *func = self->obj;
        self->obj = NULL;
        PyObject *gen = NULL;
        int served = -1;
        if (!PyCallable_Check(func)) {
            PyErr_Format(PyExc_TypeError,
                         "shift() takes a function that accepts a continuation, not %R", func);
        }
        else {
            served = host_shift(func, st, &gen);
            if (served == 0) {
                PyErr_SetObject(PyExc_RuntimeError, no_runner_message);
            }
        }
        Py_DECREF(st);
        Py_DECREF(func);
        if (served <= 0) {
            self->state = SH_DONE;
            *result = NULL;
            stop_out_as_error();
            return PYGEN_ERROR;
        }
        if (served == 2) {
            /* The task was resumed before it had to suspend: gen is the value. */
            self->state = SH_DONE;
            *result = gen;
            return PYGEN_RETURN;
        }
        self->obj = gen;
        self->state = SH_HOST;
        arg = Py_None;
    }
    /* fall through */
    case SH_HOST: {
        PySendResult r = PyIter_Send(self->obj, arg, result);
        if (r != PYGEN_NEXT) {
            self->state = SH_DONE;
            Py_CLEAR(self->obj);
            if (r == PYGEN_ERROR) {
                stop_out_as_error();
            }
        }
        return r;
    }
    case SH_YIELDED:
    case SH_PARKED:
        self->state = SH_DONE;
        Py_CLEAR(self->obj);
        *result = Py_NewRef(arg);
        return PYGEN_RETURN;
    case SH_FILLED:
        /* The value it was resumed with (see fill_park). */
        self->state = SH_DONE;
        *result = self->obj;
        self->obj = NULL;
        return PYGEN_RETURN;
    default:
        *result = reused_error();
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
#if PY_VERSION_HEX >= 0x030C0000
    /* The spare StopIteration keeps its value until the native step in
     * progress empties it (step_impl).  With none in progress (a host
     * task's await), the value gets a StopIteration of its own, which the
     * await releases, and nothing keeps it. */
    PyObject *e = steps_running > 0 ? stop_iteration(result) : own_stop(result);
#else
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, result);
#endif
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
    if (self->state == SH_PARKED && self->obj == NULL) {
        /* Resumed natively with None, the common case: finished, returning
         * None (NULL with no exception set), as sh_am_send and sh_stop would. */
        self->state = SH_DONE;
        return NULL;
    }
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
        PyObject *meth = PyObject_GetAttrString(self->obj, "throw");
        if (meth == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_Call(meth, args, NULL);
        Py_DECREF(meth);
        if (r == NULL) {
            self->state = SH_DONE;
            Py_CLEAR(self->obj);
            stop_out_as_error();
        }
        return r;
    }
    if (self->state != SH_CLOSED) {
        self->state = SH_DONE;
    }
    Py_CLEAR(self->obj);
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
    stop_out_as_error();
    return NULL;
}

static PyObject *
sh_close(Shift *self, PyObject *unused)
{
    if (self->state == SH_HOST) {
        PyObject *r = PyObject_CallMethod(self->obj, "close", NULL);
        self->state = SH_DONE;
        Py_CLEAR(self->obj);
        return r;
    }
    if (self->state == SH_PARKED) {
        /* The coroutine is being closed while suspended here (by hand, or by
         * the garbage collector): that is how a native wait is cancelled.
         * Its continuation is spent from now on, and whoever holds it learns
         * of it through its on_cancel callbacks. */
        self->state = SH_CLOSED;
        PyObject *callbacks = self->obj;
        self->obj = NULL;
        if (callbacks != NULL) {
            PyObject *r = PyObject_CallOneArg(py_run_cancel_callbacks, callbacks);
            Py_DECREF(callbacks);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        Py_RETURN_NONE;
    }
    if (self->state != SH_CLOSED) {
        self->state = SH_DONE;
    }
    Py_CLEAR(self->obj);
    Py_RETURN_NONE;
}

static PyObject *
sh_repr(Shift *self)
{
    if (self->state == SH_YIELDED && shift_mark != NULL) {
        /* Only an event loop started inside a native coroutine ever sees this. */
        return PyObject_Repr(shift_mark);
    }
    if (self->state == SH_INIT) {
        return PyUnicode_FromFormat("<dneio shift(%R)>", self->obj);
    }
    return PyUnicode_FromString("<dneio shift, awaited>");
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
    .tp_repr = (reprfunc)sh_repr,
    .tp_traverse = (traverseproc)sh_traverse,
    .tp_clear = (inquiry)sh_clear,
    .tp_dealloc = (destructor)sh_dealloc,
    .tp_as_async = &sh_as_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)sh_iternext,
    .tp_methods = sh_methods,
};


/* ------------------------------------------------------ host slots (SlotCore, HostCore) */

/* What a host task parked in shift shares with its continuation: the C half
 * of _hosts/_parking.py's Slot and HostContinuation, whose pure-Python twins
 * (PySlotCore, PyHostCore there) stay the reference.  Each state change is a
 * claim; here a claim is atomic because no Python code runs, and so the GIL
 * is not released, between reading the state and writing it (the twins take
 * a lock instead).  The engine knows nothing of any host: what differs per
 * host (how to check, wake, or hop threads) is a Python method of the slot. */

/* SlotCore and the HS_* states are in _driver_c_api.h. */

struct HostCore {
    PyObject_HEAD
    PyObject *slot;
    PyObject *callbacks;  /* None, or the on_cancel callbacks */
    PyObject *weakreflist;
    vectorcallfunc vectorcall;  /* hc_vectorcall: k(value) from Python, with no tuple */
};

static PyObject *hc_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames);

static PyTypeObject SlotCore_Type;
static PyTypeObject HostCore_Type;

/* Registered by setup_hosts(). */
static PyObject *py_spent_error = NULL;   /* _continuation.spent_error(k) -> exception */
static PyObject *py_dropped_error = NULL; /* () -> a fresh ContinuationDropped */
static PyObject *str_check_resumable = NULL;
static PyObject *str_func_failed = NULL;
static PyObject *str_call_soon_threadsafe = NULL;
static PyObject *str_resume_at_home = NULL;
static PyObject *str_wake = NULL;
static PyObject *str_line_up_deferred = NULL;
static PyObject *str_queue_behind = NULL;

static PyObject *
slot_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    SlotCore *self = (SlotCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->home = Py_NewRef(Py_None);
    self->value = Py_NewRef(Py_None);
    self->k_ref = Py_NewRef(Py_None);
    self->state = HS_PENDING;
    return (PyObject *)self;
}

static int
slot_init(SlotCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *home;
    if (!PyArg_ParseTuple(args, "O:Slot", &home)) {
        return -1;
    }
    Py_XSETREF(self->home, Py_NewRef(home));
    return 0;
}

static int
slot_traverse(SlotCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->home);
    Py_VISIT(self->value);
    Py_VISIT(self->k_ref);
    return 0;
}

static int
slot_clear(SlotCore *self)
{
    Py_CLEAR(self->home);
    Py_CLEAR(self->value);
    Py_CLEAR(self->k_ref);
    return 0;
}

static void
slot_dealloc(SlotCore *self)
{
    /* Instances of Python subclasses have their type released by its dealloc. */
    PyObject_GC_UnTrack(self);
    slot_clear(self);
    free_instance((PyObject *)self);
}

/* Run the claimed slot's task: _deliver, as the queue calls it. */
static PyObject *
slot_deliver_st(SlotCore *self, ThreadState *st)
{
    /* The task's code is not native, even if a native coroutine resumed it. */
    PyObject *driving = st->driving;
    st->driving = Py_NewRef(Py_None);
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_wake, (PyObject *)st);
    PyObject *none = st->driving;
    st->driving = driving;
    Py_DECREF(none);
    return r;
}

static PyObject *
slot_deliver(SlotCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &ThreadState_Type)) {
        PyErr_SetString(PyExc_TypeError, "_deliver(st, is_exc, value)");
        return NULL;
    }
    return slot_deliver_st(self, (ThreadState *)args[0]);
}

/* _queue.resume(st, self, False, None), with its common case inline. */
static PyObject *
slot_run_here(SlotCore *self, ThreadState *st)
{
    if (st->depth >= max_depth || st->hold || queue_blocked(st)) {
        return queue_resume(st, (PyObject *)self, Py_False, Py_None);
    }
    st->depth += 1;
    PyObject *r = slot_deliver_st(self, st);
    st->depth -= 1;
    return finish(st, r);
}

/* A continuation resumed (its value delivered, or stored for the task):
 * its on_cancel callbacks can never be called now, so they are let go with
 * the resumption rather than kept for as long as it is. */
static inline void
release_callbacks(SlotCore *slot, PyObject *k)
{
    /* k_ref is set once callbacks are registered: in the common case there
     * are none, and nothing else to look at. */
    if (slot->k_ref != NULL && slot->k_ref != Py_None && k != NULL
        && PyObject_TypeCheck(k, &HostCore_Type)) {
        HostCore *hc = (HostCore *)k;
        if (hc->callbacks != NULL && hc->callbacks != Py_None) {
            Py_SETREF(hc->callbacks, Py_NewRef(Py_None));
        }
    }
}

/* Claim the slot for a resumption and deliver; 1 if delivered, 0 if the
 * task was cancelled (a no-op), -1 on error (nothing claimed). */
static int
slot_resume_impl(SlotCore *self, PyObject *k, int is_exc, PyObject *value)
{
    ThreadState *st = state_now();
    if (st == NULL) {
        return -1;
    }
    int here = (PyObject *)st == self->home;
    /* A clear error, before anything is claimed, if the task cannot run.
     * Resumed inside func, on the task's own thread, it can: it is running,
     * and an early resumption only stores the value for it anyway.  A spent
     * continuation is told so by the claim, whatever became of its loop. */
    if (self->state == HS_PARKED || (self->state == HS_PENDING && !here)) {
        PyObject *r = PyObject_CallMethodObjArgs((PyObject *)self, str_check_resumable, k,
                                                 here ? Py_True : Py_False, NULL);
        if (r == NULL) {
            Py_DECREF(st);
            return -1;
        }
        Py_DECREF(r);
    }
    /* What the task will see, built before claiming: from the claim to the
     * stored outcome no Python code may run. */
    PyObject *outcome;
    if (is_exc) {
        if (!PyExceptionInstance_Check(value)) {
            Py_DECREF(st);
            PyErr_Format(PyExc_TypeError, "throw() takes an exception instance, not %R", value);
            return -1;
        }
        PyObject *tb = PyException_GetTraceback(value);
        outcome = PyTuple_Pack(2, value, tb ? tb : Py_None);
        Py_XDECREF(tb);
        if (outcome == NULL) {
            Py_DECREF(st);
            return -1;
        }
    }
    else {
        outcome = Py_NewRef(value);
    }
    int state = self->state;
    if (state == HS_PARKED) {
        self->state = HS_RESUMED;
    }
    else if (state == HS_PENDING) {
        self->state = HS_EARLY;
    }
    else {
        Py_DECREF(outcome);
        Py_DECREF(st);
        if (state == HS_CANCELLED) {
            return 0;  /* resuming a cancelled task is a no-op */
        }
        PyObject *exc = PyObject_CallOneArg(py_spent_error, k);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return -1;
    }
    self->is_exc = (char)is_exc;
    PyObject *old = self->value;
    self->value = outcome;
    Py_XDECREF(old);
    if (state != HS_PARKED) {
        Py_DECREF(st);
        release_callbacks(self, k);
        return 1;
    }
    if (here) {
        PyObject *r = slot_run_here(self, st);
        Py_DECREF(st);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        release_callbacks(self, k);
        return 1;
    }
    Py_DECREF(st);
    PyObject *at_home = PyObject_GetAttr((PyObject *)self, str_resume_at_home);
    PyObject *r = NULL;
    if (at_home != NULL) {
        r = PyObject_CallMethodOneArg((PyObject *)self, str_call_soon_threadsafe, at_home);
        Py_DECREF(at_home);
    }
    if (r == NULL) {
        /* The loop closed meanwhile: nothing was delivered. */
        if (self->state == HS_RESUMED) {
            self->state = HS_PARKED;
            self->is_exc = 0;
            Py_SETREF(self->value, Py_NewRef(Py_None));
        }
        return -1;
    }
    Py_DECREF(r);
    release_callbacks(self, k);
    return 1;
}

static PyObject *
slot_resume(SlotCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "resume(k, is_exc, value)");
        return NULL;
    }
    int is_exc = PyObject_IsTrue(args[1]);
    if (is_exc < 0) {
        return NULL;
    }
    int r = slot_resume_impl(self, args[0], is_exc, args[2]);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
slot_resume_at_home(SlotCore *self, PyObject *unused)
{
    if (!PyObject_TypeCheck(self->home, &ThreadState_Type)) {
        PyErr_SetString(PyExc_TypeError, "the slot's home is not a thread state");
        return NULL;
    }
    return queue_resume((ThreadState *)self->home, (PyObject *)self, Py_False, Py_None);
}

/* Are instances of ``tp`` made here, without calling the class (a HostCore
 * subclass with HostCore's own __new__ and __init__)? */
static inline int
made_here(PyTypeObject *tp)
{
    return tp->tp_new == HostCore_Type.tp_new && tp->tp_init == HostCore_Type.tp_init;
}

#ifdef DNEIO_FREE_LISTS
/* A host continuation that was resumed inside its func and that nobody
 * else held when func returned (the common case of a callback called at
 * once): its fields are cleared and it is kept for the next shift of the
 * same class, instead of being freed and allocated again.
 *
 * It is kept untracked by the collector, so no one can reach it: it had no
 * other reference and no weak one.  A continuation taken from here stays
 * untracked while its func runs (it is referenced from this C stack then,
 * so the collector has nothing to find through it) and is tracked as soon
 * as it outlives the call in any other hands.  It was never finalised: a
 * finaliser runs only on an object nobody references. */
static HostCore *spare_k = NULL;
#endif

/* A fresh continuation of ``make`` (a HostCore subclass, or any callable)
 * on this slot.  *tracked says whether the collector tracks it. */
static PyObject *
make_host_continuation(SlotCore *self, PyObject *make, int *tracked)
{
    *tracked = 1;
    if (PyType_Check(make) && made_here((PyTypeObject *)make)) {
        PyTypeObject *tp = (PyTypeObject *)make;
        HostCore *k;
#ifdef DNEIO_FREE_LISTS
        if (spare_k != NULL && Py_IS_TYPE(spare_k, tp)) {
            k = spare_k;
            spare_k = NULL;
            *tracked = 0;
        }
        else
#endif
        {
#ifdef DNEIO_FREE_LISTS
            /* One of another host's class: freed, so that this host's take its place. */
            Py_CLEAR(spare_k);
#endif
            k = (HostCore *)tp->tp_alloc(tp, 0);
            if (k == NULL) {
                return NULL;
            }
        }
        k->slot = Py_NewRef(self);
        k->callbacks = Py_NewRef(Py_None);
        k->vectorcall = hc_vectorcall;
        return (PyObject *)k;
    }
    return PyObject_CallOneArg(make, (PyObject *)self);
}

/* Release the reference to ``k`` that must_wait took, once func returned.
 * Unless k's wait is still pending or parked (k's finaliser may have work
 * then) or someone else holds k, k is kept as the spare. */
static void
release_k(SlotCore *self, PyObject *k, int tracked)
{
#ifdef DNEIO_FREE_LISTS
    if (spare_k == NULL && Py_REFCNT(k) == 1 && self->state != HS_PENDING
        && self->state != HS_PARKED && made_here(Py_TYPE(k))
        && ((HostCore *)k)->weakreflist == NULL) {
        if (tracked) {
            PyObject_GC_UnTrack(k);
        }
        hc_clear((HostCore *)k);  /* may run code: check again below */
        if (spare_k == NULL && Py_REFCNT(k) == 1) {
            spare_k = (HostCore *)k;
            return;
        }
        tracked = 0;
    }
#endif
    if (!tracked && Py_REFCNT(k) > 1) {
        PyObject_GC_Track(k);  /* it outlives the call: see spare_k */
    }
    Py_DECREF(k);  /* if func kept no reference, the continuation is dropped here */
}

/* must_wait(func, make_continuation, synchronous): see PySlotCore.must_wait.
 * 1: the task must suspend; 0: it may go on at once; -1: error. */
static int
slot_must_wait_impl(SlotCore *self, PyObject *func, PyObject *make, int synchronous)
{
    int tracked;
    PyObject *k = make_host_continuation(self, make, &tracked);
    if (k == NULL) {
        return -1;
    }
    PyObject *r = call_one(func, k);
    if (r == NULL) {
        /* func raised before resuming: the error goes to the task, k is spent. */
        if (self->state == HS_PENDING) {
            self->state = HS_SPENT;
            if (PyObject_TypeCheck(k, &HostCore_Type)) {
                PyObject *callbacks = ((HostCore *)k)->callbacks;
                if (callbacks != NULL && callbacks != Py_None
                    && (!PyList_CheckExact(callbacks) || PyList_GET_SIZE(callbacks) > 0)) {
                    /* Whoever holds k learns that the wait is over (Slot.func_failed). */
                    PyObject *exc = take_exception();
                    PyObject *stop = PyObject_CallMethodOneArg((PyObject *)self, str_func_failed, k);
                    if (stop == NULL) {
                        Py_XDECREF(exc);  /* the callbacks' own failure goes instead */
                    }
                    else if (stop != Py_None) {
                        if (exc != NULL) {
                            PyException_SetContext(stop, exc);  /* steals exc */
                        }
                        give_exception(stop);
                    }
                    else {
                        Py_DECREF(stop);
                        give_exception(exc);
                    }
                }
            }
        }
        if (!tracked) {
            PyObject_GC_Track(k);  /* a traceback may hold it */
        }
        Py_DECREF(k);
        return -1;
    }
    Py_DECREF(r);
    release_k(self, k, tracked);
    int state = self->state;
    if (state == HS_PENDING) {
        self->state = HS_PARKED;
        return 1;
    }
    if (state == HS_DROPPED) {
        PyObject *exc = PyObject_CallNoArgs(py_dropped_error);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return -1;
    }
    /* EARLY: resumed inside func. */
    if (!synchronous) {
        r = PyObject_CallMethodNoArgs((PyObject *)self, str_line_up_deferred);
        if (r == NULL) {
            return -1;
        }
        int wait = PyObject_IsTrue(r);
        Py_DECREF(r);
        return wait;
    }
    if (!PyObject_TypeCheck(self->home, &ThreadState_Type)) {
        PyErr_SetString(PyExc_TypeError, "the slot's home is not a thread state");
        return -1;
    }
    ThreadState *st = (ThreadState *)self->home;
    if (!st->hold && !queue_blocked(st)) {
        return 0;
    }
    self->state = HS_RESUMED;
    r = PyObject_CallMethodOneArg((PyObject *)self, str_queue_behind, (PyObject *)st);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 1;
}

static PyObject *
slot_must_wait(SlotCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "must_wait(func, make_continuation, synchronous)");
        return NULL;
    }
    int synchronous = PyObject_IsTrue(args[2]);
    if (synchronous < 0) {
        return NULL;
    }
    int r = slot_must_wait_impl(self, args[0], args[1], synchronous);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

/* The outcome, as the woken task sees it. */
static PyObject *
slot_outcome_impl(SlotCore *self)
{
    if (!self->is_exc) {
        return Py_NewRef(self->value != NULL ? self->value : Py_None);
    }
    PyObject *pair = self->value;
    self->value = Py_NewRef(Py_None);
    if (pair == NULL || !PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
        || !PyExceptionInstance_Check(PyTuple_GET_ITEM(pair, 0))) {
        Py_XDECREF(pair);
        PyErr_SetString(PyExc_SystemError, "a host slot's exception outcome is malformed");
        return NULL;
    }
    PyObject *exc = PyTuple_GET_ITEM(pair, 0);
    PyObject *tb = PyTuple_GET_ITEM(pair, 1);
    if (PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(pair);
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(pair);
    return NULL;
}

/* The task is being cancelled: CANCELLED unless shielded or resumed; True if so. */
static PyObject *
slot_outcome(SlotCore *self, PyObject *unused)
{
    return slot_outcome_impl(self);
}

static PyObject *
slot_claim_cancel(SlotCore *self, PyObject *unused)
{
    if (self->state != HS_PARKED || self->shielded) {
        Py_RETURN_FALSE;
    }
    self->state = HS_CANCELLED;
    Py_SETREF(self->value, Py_NewRef(Py_None));
    Py_RETURN_TRUE;
}

/* The continuation was dropped unresumed: see PySlotCore.dropped. */
static PyObject *
slot_dropped(SlotCore *self, PyObject *unused)
{
    if (self->state == HS_PENDING) {
        self->state = HS_DROPPED;
        Py_RETURN_NONE;
    }
    if (self->state != HS_PARKED) {
        Py_RETURN_NONE;
    }
    /* Built first: no Python code may run between the check and the claim. */
    PyObject *exc = PyObject_CallNoArgs(py_dropped_error);
    if (exc == NULL) {
        return NULL;
    }
    PyObject *outcome = PyTuple_Pack(2, exc, Py_None);
    Py_DECREF(exc);
    if (outcome == NULL) {
        return NULL;
    }
    if (self->state != HS_PARKED) {
        Py_DECREF(outcome);
        Py_RETURN_NONE;
    }
    self->state = HS_RESUMED;
    self->is_exc = 1;
    PyObject *old = self->value;
    self->value = outcome;
    Py_XDECREF(old);
    PyObject *at_home = PyObject_GetAttr((PyObject *)self, str_resume_at_home);
    PyObject *r = NULL;
    if (at_home != NULL) {
        r = PyObject_CallMethodOneArg((PyObject *)self, str_call_soon_threadsafe, at_home);
        Py_DECREF(at_home);
    }
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        PyErr_Clear();  /* the loop is gone, and the task with it */
        Py_RETURN_NONE;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyMemberDef slot_members[] = {
    {"home", T_OBJECT, offsetof(SlotCore, home), 0, NULL},
    {"value", T_OBJECT, offsetof(SlotCore, value), 0, NULL},
    {"k_ref", T_OBJECT, offsetof(SlotCore, k_ref), 0, NULL},
    {"state", T_INT, offsetof(SlotCore, state), 0, NULL},
    {"is_exc", T_BOOL, offsetof(SlotCore, is_exc), 0, NULL},
    {"shielded", T_BOOL, offsetof(SlotCore, shielded), 0, NULL},
    {NULL}
};

static PyMethodDef slot_methods[] = {
    {"must_wait", (PyCFunction)(void (*)(void))slot_must_wait, METH_FASTCALL,
     "Call func with a continuation; False if the task may go on at once."},
    {"resume", (PyCFunction)(void (*)(void))slot_resume, METH_FASTCALL,
     "Claim and deliver; False (nothing delivered) if the task was cancelled."},
    {"resume_at_home", (PyCFunction)slot_resume_at_home, METH_NOARGS, NULL},
    {"_deliver", (PyCFunction)(void (*)(void))slot_deliver, METH_FASTCALL, NULL},
    {"outcome", (PyCFunction)slot_outcome, METH_NOARGS,
     "The stored outcome, as the woken task sees it."},
    {"_claim_cancel", (PyCFunction)slot_claim_cancel, METH_NOARGS, NULL},
    {"dropped", (PyCFunction)slot_dropped, METH_NOARGS, NULL},
    {NULL}
};

static PyTypeObject SlotCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._core._driver_c.SlotCore",
    .tp_doc = "The compiled part of a host task's parking slot.",
    .tp_basicsize = sizeof(SlotCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = slot_new,
    .tp_init = (initproc)slot_init,
    .tp_traverse = (traverseproc)slot_traverse,
    .tp_clear = (inquiry)slot_clear,
    .tp_dealloc = (destructor)slot_dealloc,
    .tp_members = slot_members,
    .tp_methods = slot_methods,
};

/* -- the continuation handle -- */

/* Is ``o`` a SlotCore (of a subclass: the hosts' slots are)? */
static inline int
is_slot(PyObject *o)
{
    static SeenClass seen = {NULL, 0};
    return is_kind_of(o, &SlotCore_Type, &seen);
}

static PyObject *
hc_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *slot;
    if (!PyArg_ParseTuple(args, "O:HostContinuation", &slot)) {
        return NULL;
    }
    HostCore *self = (HostCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->slot = Py_NewRef(slot);
    self->callbacks = Py_NewRef(Py_None);
    self->vectorcall = hc_vectorcall;
    return (PyObject *)self;
}

static int
hc_traverse(HostCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slot);
    Py_VISIT(self->callbacks);
    return 0;
}

static int
hc_clear(HostCore *self)
{
    Py_CLEAR(self->slot);
    Py_CLEAR(self->callbacks);
    return 0;
}

/* The finaliser: a continuation dropped unresumed wakes its task with
 * ContinuationDropped instead of leaving it parked forever. */
static int
hc_must_finalize(PyObject *k)
{
    PyObject *slot = ((HostCore *)k)->slot;
    if (slot == NULL || !is_slot(slot)) {
        return 0;
    }
    int state = ((SlotCore *)slot)->state;
    return state == HS_PENDING || state == HS_PARKED;
}

static void
hc_finalize(PyObject *k)
{
    HostCore *self = (HostCore *)k;
    if (!hc_must_finalize(k)) {
        return;
    }
    PyObject *slot = self->slot;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    Py_INCREF(slot);
    PyObject *r = slot_dropped((SlotCore *)slot, NULL);
    Py_DECREF(slot);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

static void
hc_dealloc(HostCore *self)
{
    /* Instances of Python subclasses are finalised, and their type released,
     * by the subclass's own dealloc; only a bare HostCore is finalised here. */
    if (Py_IS_TYPE(self, &HostCore_Type)
        && PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return;  /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    hc_clear(self);
    free_instance((PyObject *)self);
}

static PyObject *
hc_resume(HostCore *self, int is_exc, PyObject *value)
{
    PyObject *slot = self->slot;
    if (slot != NULL && is_slot(slot)) {
        Py_INCREF(slot);
        int r = slot_resume_impl((SlotCore *)slot, (PyObject *)self, is_exc, value);
        Py_DECREF(slot);
        if (r < 0) {
            return NULL;
        }
        return PyBool_FromLong(r);
    }
    if (slot == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this continuation has no slot");
        return NULL;
    }
    return PyObject_CallMethod(slot, "resume", "OOO", (PyObject *)self,
                               is_exc ? Py_True : Py_False, value);
}

static PyObject *
hc_send(HostCore *self, PyObject *value)
{
    PyObject *slot = self->slot;
    if (slot != NULL && is_slot(slot)) {
        /* hc_resume's common case, without its truth value. */
        Py_INCREF(slot);
        int r = slot_resume_impl((SlotCore *)slot, (PyObject *)self, 0, value);
        Py_DECREF(slot);
        return r < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *r = hc_resume(self, 0, value);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *
hc_throw(HostCore *self, PyObject *exc)
{
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_Format(PyExc_TypeError, "throw() takes an exception instance, not %R", exc);
        return NULL;
    }
    PyObject *r = hc_resume(self, 1, exc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *
hc_call(HostCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *value = only_argument(args, kwds, "a continuation", "continuation");
    if (value == NULL) {
        return NULL;
    }
    return hc_send(self, value);
}

/* k(value) from Python (see call_by_tp_call). */
static PyObject *
hc_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL) {
        ternaryfunc call = Py_TYPE(self)->tp_call;
        if (call == (ternaryfunc)hc_call) {
            return hc_send((HostCore *)self, args[0]);
        }
        CallOneFn one = call_one_for(call);
        if (one != NULL) {
            return one(self, args[0]);
        }
    }
    return call_by_tp_call(self, args, nargsf, kwnames);
}

static PyObject *
hc_resume_unless_cancelled(HostCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_resume_unless_cancelled(is_exc, value)");
        return NULL;
    }
    int is_exc = PyObject_IsTrue(args[0]);
    if (is_exc < 0) {
        return NULL;
    }
    PyObject *r = hc_resume(self, is_exc, args[1]);
    if (r == NULL) {
        return NULL;
    }
    if (r == Py_True || r == Py_False) {
        /* (delivered, None), one of two made once. */
        static PyObject *pairs[2] = {NULL, NULL};
        int i = r == Py_True;
        if (pairs[i] == NULL) {
            pairs[i] = PyTuple_Pack(2, r, Py_None);
        }
        Py_DECREF(r);
        return Py_XNewRef(pairs[i]);
    }
    PyObject *pair = PyTuple_Pack(2, r, Py_None);
    Py_DECREF(r);
    return pair;
}

static PyObject *
hc_is_cancelled(HostCore *self, PyObject *unused)
{
    PyObject *slot = self->slot;
    if (slot == NULL) {
        Py_RETURN_FALSE;
    }
    if (is_slot(slot)) {
        return PyBool_FromLong(((SlotCore *)slot)->state == HS_CANCELLED);
    }
    PyObject *state = PyObject_GetAttr(slot, str_state);
    if (state == NULL) {
        return NULL;
    }
    long v = PyLong_AsLong(state);
    Py_DECREF(state);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyBool_FromLong(v == HS_CANCELLED);
}

static PyMemberDef hc_members[] = {
    {"_s", T_OBJECT, offsetof(HostCore, slot), READONLY, NULL},
    {"_callbacks", T_OBJECT, offsetof(HostCore, callbacks), 0, NULL},
    {NULL}
};

static PyMethodDef hc_methods[] = {
    {"send", (PyCFunction)hc_send, METH_O,
     "Resume the task, making its await shift(...) return value."},
    {"throw", (PyCFunction)hc_throw, METH_O,
     "Resume the task, making its await shift(...) raise exc."},
    {"_resume_unless_cancelled", (PyCFunction)(void (*)(void))hc_resume_unless_cancelled,
     METH_FASTCALL, NULL},
    {"is_cancelled", (PyCFunction)hc_is_cancelled, METH_NOARGS,
     "True once the waiting task has been cancelled."},
    {NULL}
};

static PyTypeObject HostCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._core._driver_c.HostCore",
    .tp_doc = "The compiled part of a host task's continuation.",
    .tp_basicsize = sizeof(HostCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
                | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(HostCore, vectorcall),
    .tp_new = hc_new,
    .tp_call = (ternaryfunc)hc_call,
    .tp_traverse = (traverseproc)hc_traverse,
    .tp_clear = (inquiry)hc_clear,
    .tp_dealloc = (destructor)hc_dealloc,
    .tp_finalize = (destructor)hc_finalize,
    .tp_weaklistoffset = offsetof(HostCore, weakreflist),
    .tp_members = hc_members,
    .tp_methods = hc_methods,
};

static PyObject *
setup_hosts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "setup_hosts(spent_error, dropped_error)");
        return NULL;
    }
    Py_XSETREF(py_spent_error, Py_NewRef(args[0]));
    Py_XSETREF(py_dropped_error, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* ------------------------------------------------ the queue, and holds on it */

/* The compiled twins of _queue.resume and _queue.drain, and of
 * _batch.resumptions_held.  Besides speed they give one thing the Python
 * cannot: a signal handler (Ctrl-C's KeyboardInterrupt) runs only between
 * bytecodes, so none can land between taking an entry off the queue and
 * delivering it, or between counting a resumption or a hold and uncounting
 * it.  One that did would leave a claimed task that nothing ever steps, or
 * a thread whose resumptions wait for ever. */

static PyObject *str_popleft = NULL;
static PyObject *str_append = NULL;
static PyObject *str_deliver = NULL;
static PyObject *str_add_note = NULL;

/* How many further errors of queued resumptions are named in notes. */
#define NOTED_ERRORS 10

static void
add_note(PyObject *exc, PyObject *note)
{
    if (note == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *r = PyObject_CallMethodOneArg(exc, str_add_note, note);
    Py_DECREF(note);
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
}

/* Run queued resumptions in order (see _queue.drain): reraise is True (raise
 * the first error once the queue is empty), False (note the errors on the
 * exception being handled) or an exception (note them on it). */
static PyObject *
drain_impl(ThreadState *st, PyObject *reraise)
{
    PyObject *first = NULL;
    int raise = 0;
    if (PyExceptionInstance_Check(reraise)) {
        first = Py_NewRef(reraise);
    }
    else if (reraise == Py_True) {
        raise = 1;
    }
    else {
        PyObject *handled = PyErr_GetHandledException();
        if (handled != NULL && handled != Py_None) {
            first = handled;
        }
        else {
            Py_XDECREF(handled);
        }
    }
    Py_INCREF(st);
    PyObject *queue = Py_NewRef(st->queue);
    Py_ssize_t more = 0;
    int failed = 0;
    for (;;) {
        Py_ssize_t n = queue_len(queue);
        if (n < 0) {
            failed = 1;
            break;
        }
        if (n == 0 || st->hold) {
            break;
        }
        PyObject *item = PyObject_CallMethodNoArgs(queue, str_popleft);
        if (item == NULL) {
            failed = 1;
            break;
        }
        PyObject *r = NULL;
        if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 3) {
            st->depth += 1;
            r = PyObject_CallMethodObjArgs(PyTuple_GET_ITEM(item, 0), str_deliver, (PyObject *)st,
                                           PyTuple_GET_ITEM(item, 1), PyTuple_GET_ITEM(item, 2),
                                           NULL);
            st->depth -= 1;
        }
        else {
            PyErr_Format(PyExc_TypeError, "dneio: a queued resumption is not "
                                          "(continuation, is_exc, value): %R", item);
        }
        Py_DECREF(item);
        if (r != NULL) {
            Py_DECREF(r);
            continue;
        }
        PyObject *exc = take_exception();
        if (exc == NULL) {
            continue;
        }
        if (first == NULL) {
            first = exc;
            continue;
        }
        if (more < NOTED_ERRORS) {
            add_note(first, PyUnicode_FromFormat("a queued resumption raised too: %R", exc));
        }
        more += 1;
        Py_DECREF(exc);
    }
    Py_DECREF(queue);
    Py_DECREF(st);
    if (failed) {
        Py_XDECREF(first);
        return NULL;
    }
    if (more > NOTED_ERRORS && first != NULL) {
        add_note(first, PyUnicode_FromFormat("... and %zd more queued resumptions raised",
                                             more - NOTED_ERRORS));
    }
    if (first != NULL && raise) {
        give_exception(first);
        return NULL;
    }
    Py_XDECREF(first);
    Py_RETURN_NONE;
}

static PyObject *
drain_fn(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || !PyObject_TypeCheck(args[0], &ThreadState_Type)) {
        PyErr_SetString(PyExc_TypeError, "drain(st, reraise=True)");
        return NULL;
    }
    PyObject *reraise = Py_True;
    if (nargs == 2) {
        reraise = args[1];
        if (!PyExceptionInstance_Check(reraise)) {
            int t = PyObject_IsTrue(reraise);
            if (t < 0) {
                return NULL;
            }
            reraise = t ? Py_True : Py_False;
        }
    }
    return drain_impl((ThreadState *)args[0], reraise);
}

/* Run claimed continuation k now, or queue it behind earlier ones (see
 * _queue.resume). */
static PyObject *
queue_resume(ThreadState *st, PyObject *k, PyObject *is_exc, PyObject *value)
{
    Py_ssize_t n = queue_len(st->queue);
    if (n < 0) {
        return NULL;
    }
    if (st->depth >= max_depth || n > 0 || st->hold) {
        PyObject *entry = PyTuple_Pack(3, k, is_exc, value);
        if (entry == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_CallMethodOneArg(st->queue, str_append, entry);
        Py_DECREF(entry);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        if (!st->depth && !st->hold) {
            r = drain_impl(st, Py_True);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        Py_RETURN_NONE;
    }
    Py_INCREF(st);
    st->depth += 1;
    PyObject *answer = PyObject_CallMethodObjArgs(k, str_deliver, (PyObject *)st, is_exc, value,
                                                  NULL);
    st->depth -= 1;
    PyObject *r = finish(st, answer);
    Py_DECREF(st);
    return r;
}

static PyObject *
resume_fn(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyObject_TypeCheck(args[0], &ThreadState_Type)) {
        PyErr_SetString(PyExc_TypeError, "resume(st, k, is_exc, value)");
        return NULL;
    }
    return queue_resume((ThreadState *)args[0], args[1], args[2], args[3]);
}

/* resumptions_held(): a ``with`` block whose resumptions only claim their
 * continuations; the claimed coroutines run, in order, when it ends.  Its
 * hold is taken and given back inside __enter__ and __exit__, where no
 * signal handler can run between the count and what depends on it. */
typedef struct {
    PyObject_HEAD
    ThreadState *st;  /* while entered */
    char owner;       /* the queue was free when it was entered: it drains it */
} Held;

static PyObject *
held_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "resumptions_held() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static PyObject *
held_enter(Held *self, PyObject *unused)
{
    if (self->st != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this resumptions_held() block is entered already; use a new one");
        return NULL;
    }
    ThreadState *st = state_now();
    if (st == NULL) {
        return NULL;
    }
    Py_ssize_t n = queue_len(st->queue);
    if (n < 0) {
        Py_DECREF(st);
        return NULL;
    }
    self->owner = n == 0 && st->hold == 0;
    st->hold += 1;
    self->st = st;
    Py_RETURN_NONE;
}

static PyObject *
held_exit(Held *self, PyObject *const *args, Py_ssize_t nargs)
{
    ThreadState *st = self->st;
    if (st == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this resumptions_held() block was not entered");
        return NULL;
    }
    self->st = NULL;
    st->hold -= 1;
    int run = self->owner && !st->hold && st->depth < max_depth;
    if (!run && !st->hold && !st->depth) {
        /* Queued before the block (or held by a runner meanwhile): whoever
         * queued them drains them, unless no one is left to. */
        Py_ssize_t n = queue_len(st->queue);
        if (n < 0) {
            Py_DECREF(st);
            return NULL;
        }
        run = n > 0;
    }
    if (run) {
        /* Leaving with an exception: the queued errors go to its notes. */
        PyObject *exc = nargs >= 2 && PyExceptionInstance_Check(args[1]) ? args[1] : Py_True;
        PyObject *r = drain_impl(st, exc);
        if (r == NULL) {
            Py_DECREF(st);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(st);
    Py_RETURN_FALSE;
}

static void
held_dealloc(Held *self)
{
    if (self->st != NULL) {
        /* Entered and never left (its __enter__ called by hand): give the
         * hold back, so that the thread's resumptions do not wait for ever. */
        self->st->hold -= 1;
        Py_CLEAR(self->st);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef held_methods[] = {
    {"__enter__", (PyCFunction)held_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))held_exit, METH_FASTCALL, NULL},
    {NULL}
};

static PyTypeObject Held_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio.lowlevel.resumptions_held",
    .tp_basicsize = sizeof(Held),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "resumptions_held()\n--\n\n"
              "Resume continuations inside the block; their coroutines run when it ends.\n\n"
              "Inside the block each resumption only claims its continuation (from then\n"
              "on it can no longer be cancelled or withdrawn); on leaving the block the\n"
              "claimed coroutines run in the order they were resumed.",
    .tp_new = held_new,
    .tp_dealloc = (destructor)held_dealloc,
    .tp_methods = held_methods,
};

/* ------------------------------------------------------------------ module */

static PyObject *
setup(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "local", "shift_mark", "func_failed", "after_foreign", "spent",
        "continuation_type", "reset", "start_hosting", "run_cancel_callbacks",
        "fresh_coroutine", "max_depth", NULL};
    PyObject *a[10];
    Py_ssize_t depth;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOn:setup", kwlist,
                                     &a[0], &a[1], &a[2], &a[3], &a[4], &a[5],
                                     &a[6], &a[7], &a[8], &a[9], &depth)) {
        return NULL;
    }
    Py_XSETREF(py_run_cancel_callbacks, Py_NewRef(a[8]));
    Py_XSETREF(py_entry_probe, Py_NewRef(a[7]));
    Py_XSETREF(py_reset, Py_NewRef(a[6]));
    Py_XSETREF(local_obj, Py_NewRef(a[0]));
    Py_XSETREF(shift_mark, Py_NewRef(a[1]));
    Py_XSETREF(py_func_failed, Py_NewRef(a[2]));
    Py_XSETREF(py_after_foreign, Py_NewRef(a[3]));
    Py_XSETREF(py_spent, Py_NewRef(a[4]));
    PyTypeObject *ktype = (PyTypeObject *)a[5];
    if (!PyType_Check(a[5]) || !PyType_IsSubtype(ktype, &NativeCore_Type)
        || !(ktype->tp_flags & Py_TPFLAGS_HEAPTYPE) || ktype->tp_dictoffset != 0
        || ktype->tp_weaklistoffset != 0 || ktype->tp_basicsize != sizeof(NativeCore)
        || ktype->tp_finalize != NULL || ktype->tp_del != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "continuation_type must be a subclass of NativeCore with "
                        "__slots__ = () and no finaliser");
        return NULL;
    }
#ifdef DNEIO_FREE_LISTS
    flush_free_continuations();
#endif
    ktype->tp_dealloc = (destructor)nc_sub_dealloc;
    Py_XSETREF(continuation_type, Py_NewRef(a[5]));
    max_depth = depth;
#ifdef DNEIO_FRAME_STATE
    /* Learn how this Python marks a coroutine that has not started. */
    if (PyCoro_CheckExact(a[9])) {
        created_state = ((PyCoroObject *)a[9])->cr_frame_state;
        created_state_known = 1;
    }
#endif
    Py_RETURN_NONE;
}

/* True if ``coro`` (an exact coroutine) has not started yet; -1 on error. */
static int
not_started(PyObject *coro)
{
#ifdef DNEIO_FRAME_STATE
    if (created_state_known) {
        return ((PyCoroObject *)coro)->cr_frame_state == created_state;
    }
#endif
    /* Unknown layout: leave the check to the Python reset. */
    return 0;
}

static PyObject *
reset_fn(PyObject *module, PyObject *coro)
{
    if (!PyCoro_CheckExact(coro) || !not_started(coro)) {
        /* Not a coroutine, or one already started: the Python reset explains. */
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
    ThreadState *st = state_now();
    if (st == NULL) {
        return NULL;
    }
    if (st->depth >= max_depth) {
        Py_DECREF(st);
        return PyObject_CallOneArg(py_reset, coro);
    }
    /* The coroutine's own context: a copy of the caller's. */
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        Py_DECREF(st);
        return NULL;
    }
    Py_INCREF(coro);
    int not_run;
    st->depth += 1;
    PyObject *answer = hooked_step(st, coro, ctx, Py_None, NULL, &not_run);
    st->depth -= 1;
    answer = finish(st, answer);
    Py_DECREF(ctx);
    Py_DECREF(st);
    Py_DECREF(coro);
    return answer;
}

static PyObject *
take_shift(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "take_shift(yielded, default)");
        return NULL;
    }
    PyObject *yielded = args[0];
    if (Py_IS_TYPE(yielded, &Shift_Type) && ((Shift *)yielded)->state == SH_YIELDED) {
        PyObject *func = ((Shift *)yielded)->obj;
        ((Shift *)yielded)->obj = NULL;
        ((Shift *)yielded)->state = SH_PARKED;
        return func;
    }
    return Py_NewRef(args[1]);
}

/* A native continuation whose coroutine was not closed: what primitives
 * check before handing a waiter anything (one call instead of two). */
static int
live_native(PyObject *k)
{
    return (PyObject *)Py_TYPE(k) == continuation_type && !park_closed(((NativeCore *)k)->park);
}

static PyObject *
is_live_native(PyObject *module, PyObject *k)
{
    return PyBool_FromLong(live_native(k));
}

/* For the capsule: k.send(value) of a continuation known to be native. */
static PyObject *
native_send(PyObject *k, PyObject *value)
{
    return nc_send((NativeCore *)k, value);
}

static PyObject *
current_state_fn(PyObject *module, PyObject *unused)
{
    return (PyObject *)current_state();
}

static PyObject *
set_host_shift(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyLong_Check(args[1]) || !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "set_host_shift(shift_in_task, skip, no_runner_message)");
        return NULL;
    }
    Py_XSETREF(py_host_shift, Py_NewRef(args[0]));
    Py_XSETREF(host_shift_skip, Py_NewRef(args[1]));
    Py_XSETREF(no_runner_message, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyObject *
set_hosts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1 && args[0] == Py_None) {
        Py_CLEAR(hosts_shift);
        Py_CLEAR(hosts_watch);
        resolve_host_shifts();
        Py_RETURN_NONE;
    }
    if (nargs != 2 || !PyTuple_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_hosts(shifts: tuple, watch: tuple) or set_hosts(None)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[0]); i++) {
        if (!PyCallable_Check(PyTuple_GET_ITEM(args[0], i))) {
            PyErr_SetString(PyExc_TypeError, "set_hosts: every shift must be callable");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[1]); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(args[1], i))) {
            PyErr_SetString(PyExc_TypeError, "set_hosts: every watched module must be a str");
            return NULL;
        }
    }
    Py_XSETREF(hosts_watch, Py_NewRef(args[1]));
    clean_modules = NULL;  /* checked afresh for what is watched now */
    Py_XSETREF(hosts_shift, Py_NewRef(args[0]));
    resolve_host_shifts();
    Py_RETURN_NONE;
}

static PyObject *
set_entry_hook(PyObject *module, PyObject *value)
{
    Py_XSETREF(entry_hook, Py_NewRef(value));
    entry_enter = NULL;
    entry_leave = NULL;
    for (int i = 0; i < n_hook_types; i++) {
        if (Py_IS_TYPE(value, hook_types[i].type)) {
            entry_enter = hook_types[i].enter;
            entry_leave = hook_types[i].leave;
        }
    }
    Py_RETURN_NONE;
}

static int
add_hook_type(PyTypeObject *type, HookEnterFn enter, HookLeaveFn leave)
{
    if (type->tp_flags & Py_TPFLAGS_BASETYPE) {
        PyErr_Format(PyExc_TypeError, "dneio: a compiled hook type (%s) must not be subclassable",
                     type->tp_name);
        return -1;
    }
    for (int i = 0; i < n_hook_types; i++) {
        if (hook_types[i].type == type) {
            hook_types[i].enter = enter;
            hook_types[i].leave = leave;
            return 0;
        }
    }
    if (n_hook_types == (int)(sizeof(hook_types) / sizeof(hook_types[0]))) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: too many compiled hook types");
        return -1;
    }
    Py_INCREF(type);
    hook_types[n_hook_types].type = type;
    hook_types[n_hook_types].enter = enter;
    hook_types[n_hook_types].leave = leave;
    n_hook_types += 1;
    return 0;
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

/* own_methods(cls): give ``cls`` its own copy of each method it inherits
 * from a compiled base, made for ``cls`` itself.
 *
 * The interpreter specialises a call of a compiled method (``k.send(v)``)
 * to a direct call only while the object's type is exactly the type the
 * method was made for.  Instances of a Python subclass of a compiled type
 * fail that check on every call and go the generic way (a method object's
 * call, with a subclass check).  A copy made for the subclass passes it.
 * Methods the subclass (or a Python class before the compiled one in its
 * MRO) defines itself are left alone: only what cls.name finds is copied.
 *
 * It also gives the instances the base's vectorcall, if it has one (a call
 * with no argument tuple), and, if they are exactly the base's instances,
 * owned_dealloc instead of the generic deallocation (to the classes
 * between cls and the base as well, where theirs are too). */
static PyObject *
own_methods(PyObject *module, PyObject *arg)
{
    if (!PyType_Check(arg)) {
        return PyErr_Format(PyExc_TypeError, "own_methods() takes a class, not %R", arg);
    }
    PyTypeObject *cls = (PyTypeObject *)arg;
    PyObject *mro = cls->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) {
        PyErr_SetString(PyExc_TypeError, "own_methods() takes a class that is ready");
        return NULL;
    }
    Py_INCREF(mro);
    int ok = 1;
    for (Py_ssize_t i = 1; ok && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if ((base->tp_flags & Py_TPFLAGS_HEAPTYPE) || base->tp_methods == NULL
            || base == &PyBaseObject_Type) {
            continue;
        }
        for (PyMethodDef *def = base->tp_methods; ok && def->ml_name != NULL; def++) {
            if (def->ml_flags & (METH_CLASS | METH_STATIC)) {
                continue;
            }
            PyObject *found = PyObject_GetAttrString(arg, def->ml_name);
            if (found == NULL) {
                ok = 0;
                break;
            }
            if (Py_IS_TYPE(found, &PyMethodDescr_Type)
                && ((PyMethodDescrObject *)found)->d_method == def
                && PyDescr_TYPE(found) != cls) {
                PyObject *own = PyDescr_NewMethod(cls, def);
                ok = own != NULL && PyObject_SetAttrString(arg, def->ml_name, own) == 0;
                Py_XDECREF(own);
            }
            Py_DECREF(found);
        }
    }
    Py_DECREF(mro);
    if (!ok) {
        return NULL;
    }
    PyTypeObject *base = compiled_base(cls);
    if (base != cls && (base->tp_flags & Py_TPFLAGS_HAVE_VECTORCALL)) {
        /* Its instances called directly, with the base's vectorcall (which
         * honours the call the class has: see call_by_tp_call). */
        cls->tp_vectorcall_offset = base->tp_vectorcall_offset;
        cls->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    }
    /* The classes between cls and its compiled base too: CPython lets an
     * object's __class__ change only between classes whose deallocation
     * is the same down to a common base. */
    for (PyTypeObject *t = cls; t != base && may_own_dealloc(t); t = t->tp_base) {
        t->tp_dealloc = owned_dealloc;
#ifdef DNEIO_FREE_LISTS
        own_free_list(t);
#endif
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"own_methods", own_methods, METH_O,
     "own_methods(cls): copy the compiled methods cls inherits into cls, made for cls."},
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
    {"set_hosts", (PyCFunction)(void (*)(void))set_hosts, METH_FASTCALL,
     "set_hosts(shifts, watch): the registry's hot path (see host_shift), or None."},
    {"set_host_shift", (PyCFunction)(void (*)(void))set_host_shift, METH_FASTCALL,
     "set_host_shift(shift_in_task, skip, no_runner_message): how a host task's shift is served."},
    {"current_state", current_state_fn, METH_NOARGS,
     "This thread's ThreadState (what _impl.local.state holds), cached per thread."},
    {"setup_hosts", (PyCFunction)(void (*)(void))setup_hosts, METH_FASTCALL,
     "setup_hosts(spent_error, dropped_error): what the host slots raise."},
    {"is_live_native", is_live_native, METH_O,
     "True for a native continuation whose coroutine was not closed."},
    {"take_shift", (PyCFunction)(void (*)(void))take_shift, METH_FASTCALL,
     "take_shift(yielded, default): the func of a native shift request, or default."},
    {"drain", (PyCFunction)(void (*)(void))drain_fn, METH_FASTCALL,
     "drain(st, reraise=True): run the queued resumptions in order (_queue.drain)."},
    {"resume", (PyCFunction)(void (*)(void))resume_fn, METH_FASTCALL,
     "resume(st, k, is_exc, value): run claimed k now, or queue it (_queue.resume)."},
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
        || PyType_Ready(&Shift_Type) < 0 || PyType_Ready(&SlotCore_Type) < 0
        || PyType_Ready(&HostCore_Type) < 0 || PyType_Ready(&Held_Type) < 0) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (make_own_stop_type() < 0) {
        return NULL;
    }
#endif
    if (check_deque_size() < 0 || learn_subtype_dealloc() < 0) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    find_await_getters();
#endif
    str_state = PyUnicode_InternFromString("state");
    probe_module = Py_NewRef(Py_None);
    str_enter = PyUnicode_InternFromString("enter");
    str_leave = PyUnicode_InternFromString("leave");
    entry_hook = Py_NewRef(Py_None);
    str_check_resumable = PyUnicode_InternFromString("check_resumable");
    str_func_failed = PyUnicode_InternFromString("func_failed");
    str_call_soon_threadsafe = PyUnicode_InternFromString("call_soon_threadsafe");
    str_resume_at_home = PyUnicode_InternFromString("resume_at_home");
    str_wake = PyUnicode_InternFromString("_wake");
    str_line_up_deferred = PyUnicode_InternFromString("line_up_deferred");
    str_queue_behind = PyUnicode_InternFromString("queue_behind");
    str_popleft = PyUnicode_InternFromString("popleft");
    str_append = PyUnicode_InternFromString("append");
    str_deliver = PyUnicode_InternFromString("_deliver");
    str_add_note = PyUnicode_InternFromString("add_note");
    PyObject *m = PyModule_Create(&driver_c_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "API", DNEIO_CORE_API) < 0
        || PyModule_AddObjectRef(m, "ThreadState", (PyObject *)&ThreadState_Type) < 0
        || PyModule_AddObjectRef(m, "NativeCore", (PyObject *)&NativeCore_Type) < 0
        || PyModule_AddObjectRef(m, "ShiftType", (PyObject *)&Shift_Type) < 0
        || PyModule_AddObjectRef(m, "SlotCore", (PyObject *)&SlotCore_Type) < 0
        || PyModule_AddObjectRef(m, "HostCore", (PyObject *)&HostCore_Type) < 0
        || PyModule_AddObjectRef(m, "resumptions_held", (PyObject *)&Held_Type) < 0
#if PY_VERSION_HEX >= 0x030C0000
        /* Named where pickle looks for it. */
        || PyModule_AddObjectRef(m, "StopIteration", (PyObject *)own_stop_type) < 0
#endif
        ) {
        Py_DECREF(m);
        return NULL;
    }
    static DneioCAPI capi;
    capi.version = DNEIO_CAPI_VERSION;
    capi.slot_type = &SlotCore_Type;
    capi.thread_state_type = &ThreadState_Type;
    capi.current_state = current_state;
    capi.must_wait = slot_must_wait_impl;
    capi.outcome = slot_outcome_impl;
    capi.is_live_native = live_native;
    capi.native_send = native_send;
    capi.add_hook_type = add_hook_type;
    capi.resume = slot_resume_impl;
    capi.add_host_shift = add_host_shift;
    capi.add_passing_type = add_passing_type;
    capi.stop_with = sh_stop;
    capi.add_call_one = add_call_one;
    capi.free_instance = free_instance;
    PyObject *capsule = PyCapsule_New(&capi, DNEIO_CAPI_NAME, NULL);
    if (capsule == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    int added = PyModule_AddObjectRef(m, "_C_API", capsule);
    Py_DECREF(capsule);
    if (added < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
