/* The compiled part of the asyncio runner: a task's shift, the parking slot
 * it waits on, and its synchronous wake-up.
 *
 * It mirrors _runner.py, which stays the reference: PyAsyncioSlotCore there
 * is the pure-Python twin of AsyncioSlotCore here, and every unusual case
 * (a cancellation thrown in, the deferred mode, a closed or stopped loop, a
 * trio guest run, several done-callbacks) is handed to the Python methods of
 * the slot whose names end in _slow.  It builds on the compiled core's host
 * slot (SlotCore), reached through the capsule the core exports.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_driver_c_api.h"
#include "_fast_reads.h"

static DneioCAPI *capi = NULL;

/* Registered by setup(). */
static PyObject *get_running_loop = NULL; /* asyncio._get_running_loop */
static PyObject *current_task = NULL;     /* the runner's checked current-task getter */
static PyObject *current_task_dict = NULL; /* the dict whose get current_task is, or NULL */
static PyObject *enter_task = NULL;       /* asyncio's _enter_task */
static PyObject *leave_task = NULL;       /* asyncio's _leave_task */
static PyObject *runner = NULL;           /* the AsyncioRunner (its synchronous flag) */
static PyObject *hosting_flag = NULL;     /* _entry.HOSTING (its asyncio attribute) */
static PyObject *start_hosting = NULL;    /* AsyncioHosting.start_if_running(loop) */
static PyObject *slot_type = NULL;        /* _runner.AsyncioSlot */
static PyObject *continuation_type = NULL; /* _runner.AsyncioContinuation */
static PyObject *nesting = NULL;          /* _registry._nesting: (module, name) pairs */

static PyObject *str_synchronous = NULL;
static PyObject *str_asyncio = NULL;
static PyObject *str_trio_run = NULL;
static PyObject *str_wake_slow = NULL;
static PyObject *str_check_resumable_slow = NULL;
static PyObject *str_finish_slow = NULL;
static PyObject *str_throw_slow = NULL;
static PyObject *str_close_slow = NULL;
static PyObject *str_result_slow = NULL;
static PyObject *str_call_soon = NULL;
static PyObject *str_context = NULL;
static PyObject *str_task = NULL;
static PyObject *str_dict = NULL;
static PyObject *str_trio = NULL;
static PyObject *str_records = NULL;
static PyObject *str_loop = NULL;
static PyObject *str_ended = NULL;
static PyObject *str_ref = NULL;
static PyObject *str_free = NULL;
static PyObject *str_loops = NULL;
static PyObject *str_quit = NULL;
static PyObject *str_adopted = NULL;
static PyObject *str_cancel_requested = NULL;

/* The attributes read on every shift and hosting, where they are plain
 * slots of these classes: read at their offsets (see _fast_reads.h). */
static SlotRead read_hosting_trio = SLOT_READ(str_trio);        /* Hosting.trio */
static SlotRead read_hosting_asyncio = SLOT_READ(str_asyncio);  /* Hosting.asyncio */
static SlotRead read_records = SLOT_READ(str_records);          /* AsyncioHosting.records */
static SlotRead read_loops = SLOT_READ(str_loops);              /* AsyncioHosting.loops */
static SlotRead read_free = SLOT_READ(str_free);                /* AsyncioHosting.free */
static SlotRead read_host_loop = SLOT_READ(str_loop);           /* _Host.loop */
static SlotRead read_host_ended = SLOT_READ(str_ended);         /* _Host.ended */
static SlotRead read_host_task = SLOT_READ(str_task);           /* _Host.task */
static SlotRead read_host_ref = SLOT_READ(str_ref);             /* _Host.ref */
static SlotRead read_host_quit = SLOT_READ(str_quit);           /* _Host.quit */
static SlotRead read_host_adopted = SLOT_READ(str_adopted);     /* _Host.adopted */
static SlotRead read_host_cancel_requested = SLOT_READ(str_cancel_requested);
static SlotRead read_synchronous = SLOT_READ(str_synchronous);  /* AsyncioRunner.synchronous */

static SlotRead *const all_reads[] = {
    &read_hosting_trio, &read_hosting_asyncio, &read_records, &read_loops, &read_free,
    &read_host_loop, &read_host_ended, &read_host_task, &read_host_ref, &read_host_quit,
    &read_host_adopted, &read_host_cancel_requested, &read_synchronous};

/* The runner's synchronous flag: 1, 0, or -1. */
static int
synchronous_mode(void)
{
    return slot_true(&read_synchronous, runner);
}
#define N_READS (sizeof(all_reads) / sizeof(all_reads[0]))

enum {
    PH_FRESH,   /* not awaited yet */
    PH_WAITING, /* yielded itself to the task, which waits on it */
    PH_OVER,    /* the wait is over */
};

typedef struct {
    SlotCore base;
    PyObject *loop;
    PyObject *task;
    /* The done-callbacks, as asyncio's own future keeps them: the first
     * inline (the one a waiting task adds), any others in a list of
     * (fn, context) pairs.  Python sees one list: done_callbacks. */
    PyObject *cb0;    /* NULL, or the first callback */
    PyObject *ctx0;   /* its context */
    PyObject *more;   /* NULL, or a list of (fn, context) */
    PyObject *cancel_msg;
    char cancel_pending;
    char deferred;   /* woken with call_soon and not yet running */
    char queued;     /* claimed, but waiting in the thread's resumption queue */
    char blocking;   /* _asyncio_future_blocking */
    int phase;
} AsyncioSlotCore;

static PyTypeObject AsyncioSlotCore_Type;

/* The fields of a fresh wait, in a slot whose object fields hold nothing
 * (just allocated, or emptied by as_init_fields). */
static inline void
as_init_new(AsyncioSlotCore *self, PyObject *home, PyObject *loop, PyObject *task)
{
    self->base.home = Py_NewRef(home);
    self->base.value = Py_NewRef(Py_None);
    self->base.k_ref = Py_NewRef(Py_None);
    self->base.state = HS_PENDING;
    self->base.is_exc = 0;
    self->base.shielded = 0;
    self->loop = Py_NewRef(loop);
    self->task = Py_NewRef(task);
    self->cancel_msg = Py_NewRef(Py_None);
    self->cancel_pending = 0;
    self->deferred = 0;
    self->queued = 0;
    self->blocking = 0;
    self->phase = PH_FRESH;
}

/* The same for a slot that may hold references already (its __init__):
 * they are released once the new fields are in place. */
static int
as_init_fields(AsyncioSlotCore *self, PyObject *home, PyObject *loop, PyObject *task)
{
    PyObject *old[] = {self->base.home, self->base.value, self->base.k_ref, self->loop,
                       self->task, self->cb0, self->ctx0, self->more, self->cancel_msg};
    self->cb0 = self->ctx0 = self->more = NULL;
    as_init_new(self, home, loop, task);
    for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
        Py_XDECREF(old[i]);
    }
    return 0;
}

static PyObject *
as_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    AsyncioSlotCore *self = (AsyncioSlotCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    as_init_new(self, Py_None, Py_None, Py_None);
    return (PyObject *)self;
}

static int
as_init(AsyncioSlotCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *home, *loop, *task;
    if (!PyArg_ParseTuple(args, "OOO:AsyncioSlot", &home, &loop, &task)) {
        return -1;
    }
    return as_init_fields(self, home, loop, task);
}

static int
as_traverse(AsyncioSlotCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->task);
    Py_VISIT(self->cb0);
    Py_VISIT(self->ctx0);
    Py_VISIT(self->more);
    Py_VISIT(self->cancel_msg);
    return capi->slot_type->tp_traverse((PyObject *)self, visit, arg);
}

static int
as_clear(AsyncioSlotCore *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->task);
    Py_CLEAR(self->cb0);
    Py_CLEAR(self->ctx0);
    Py_CLEAR(self->more);
    Py_CLEAR(self->cancel_msg);
    return capi->slot_type->tp_clear((PyObject *)self);
}

static void
as_dealloc(AsyncioSlotCore *self)
{
    /* Instances of Python subclasses have their type released by its dealloc. */
    PyObject_GC_UnTrack(self);
    as_clear(self);
    capi->free_instance((PyObject *)self);
}

/* -- the future protocol, as asyncio.Task uses it -- */

static PyObject *
as_get_loop(AsyncioSlotCore *self, PyObject *unused)
{
    return Py_NewRef(self->loop != NULL ? self->loop : Py_None);
}

static inline int
as_is_done(AsyncioSlotCore *self)
{
    return self->base.state >= HS_RESUMED && !self->queued;
}

static PyObject *
as_done(AsyncioSlotCore *self, PyObject *unused)
{
    return PyBool_FromLong(as_is_done(self));
}

static PyObject *
as_cancelled(AsyncioSlotCore *self, PyObject *unused)
{
    return PyBool_FromLong(self->base.state == HS_CANCELLED);
}

static PyObject *
as_add_done_callback(AsyncioSlotCore *self, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    PyObject *fn = NULL, *context = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback(fn, *, context=None)");
        return NULL;
    }
    fn = args[0];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_Compare(name, str_context) != 0) {
            PyErr_Format(PyExc_TypeError, "add_done_callback() got an unexpected keyword %R",
                         name);
            return NULL;
        }
        context = args[nargs + i];
    }
    PyObject *ctx = context == Py_None ? PyContext_CopyCurrent() : Py_NewRef(context);
    if (ctx == NULL) {
        return NULL;
    }
    if (as_is_done(self)) {
        /* self.loop.call_soon(fn, self, context=ctx) */
        PyObject *call_args[4] = {self->loop, fn, (PyObject *)self, ctx};
        PyObject *names = PyTuple_Pack(1, str_context);
        PyObject *r = NULL;
        if (names != NULL) {
            r = PyObject_VectorcallMethod(str_call_soon, call_args,
                                          3, names);
            Py_DECREF(names);
        }
        Py_DECREF(ctx);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    if (self->cb0 == NULL) {
        self->cb0 = Py_NewRef(fn);
        self->ctx0 = ctx;
        Py_RETURN_NONE;
    }
    PyObject *item = PyTuple_Pack(2, fn, ctx);
    Py_DECREF(ctx);
    if (item == NULL) {
        return NULL;
    }
    if (self->more == NULL) {
        self->more = PyList_New(0);
        if (self->more == NULL) {
            Py_DECREF(item);
            return NULL;
        }
    }
    int r = PyList_Append(self->more, item);
    Py_DECREF(item);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* done_callbacks: the callbacks as one list of (fn, context) pairs. */
static PyObject *
as_get_done_callbacks(AsyncioSlotCore *self, void *closure)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    if (self->cb0 != NULL) {
        PyObject *item = PyTuple_Pack(2, self->cb0, self->ctx0 ? self->ctx0 : Py_None);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    if (self->more != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(list);
        if (PyList_SetSlice(list, n, n, self->more) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

static int
as_set_done_callbacks(AsyncioSlotCore *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "done_callbacks cannot be deleted");
        return -1;
    }
    PyObject *items = PySequence_List(value);
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_TypeError, "done_callbacks holds (fn, context) pairs");
            return -1;
        }
    }
    PyObject *cb0 = NULL, *ctx0 = NULL, *more = NULL;
    if (n >= 1) {
        cb0 = Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(items, 0), 0));
        ctx0 = Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(items, 0), 1));
    }
    if (n >= 2) {
        more = PyList_GetSlice(items, 1, n);
        if (more == NULL) {
            Py_XDECREF(cb0);
            Py_XDECREF(ctx0);
            Py_DECREF(items);
            return -1;
        }
    }
    Py_DECREF(items);
    Py_XSETREF(self->cb0, cb0);
    Py_XSETREF(self->ctx0, ctx0);
    Py_XSETREF(self->more, more);
    return 0;
}

static PyGetSetDef as_getset[] = {
    {"done_callbacks", (getter)as_get_done_callbacks, (setter)as_set_done_callbacks,
     "The done-callbacks: a list of (fn, context) pairs (a copy).", NULL},
    {NULL}
};

static PyObject *
as_result(AsyncioSlotCore *self, PyObject *unused)
{
    if (self->base.state != HS_CANCELLED) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethodNoArgs((PyObject *)self, str_result_slow);
}

/* -- dneio -- */

static PyObject *
as_check_resumable(AsyncioSlotCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "check_resumable(k, here)");
        return NULL;
    }
    if (args[1] == Py_True) {
        PyObject *loop = call_noargs(get_running_loop);
        if (loop == NULL) {
            return NULL;
        }
        Py_DECREF(loop);
        if (loop == self->loop) {
            Py_RETURN_NONE;  /* running here, so not closed either */
        }
    }
    return PyObject_VectorcallMethod(str_check_resumable_slow,
                                     (PyObject *[]){(PyObject *)self, args[0], args[1]},
                                     3, NULL);
}

/* current_task(loop) (a new reference): a read of asyncio's dict of
 * current tasks where current_task is that dict's get. */
#if PY_VERSION_HEX < 0x030C0000
/* The last task found in the dict, and the dict's version tag then: while
 * the tag is the same the dict has not changed, so it still holds that loop
 * and its task (both borrowed here, kept alive by the dict).  asyncio changes
 * the dict at every task step, so this serves the shifts a step makes after
 * its first, such as reads a callback API serves at once.  (The tag is
 * deprecated from 3.12 on, where the look-up is a smaller part of a shift.) */
static PyObject *found_loop = NULL;
static PyObject *found_task = NULL;
static uint64_t found_version = 0;
#endif

static inline PyObject *
current_task_of(PyObject *loop)
{
    if (current_task_dict != NULL) {
#if PY_VERSION_HEX < 0x030C0000
        uint64_t version = ((PyDictObject *)current_task_dict)->ma_version_tag;
        if (loop == found_loop && version == found_version) {
            return Py_NewRef(found_task);
        }
#endif
        PyObject *task = PyDict_GetItemWithError(current_task_dict, loop);
        if (task != NULL) {
#if PY_VERSION_HEX < 0x030C0000
            found_loop = loop;
            found_task = task;
            found_version = version;
#endif
            return Py_NewRef(task);
        }
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return call_one(current_task, loop);
}

/* Run the task step that its one done-callback starts, right now (what
 * _internals.step does; the trio guest case is left to it). */
static PyObject *
as_step(AsyncioSlotCore *self, PyObject *wakeup, PyObject *ctx)
{
    PyObject *loop = Py_NewRef(self->loop);
    PyObject *current = current_task_of(loop);
    if (current == NULL) {
        Py_DECREF(loop);
        return NULL;
    }
    if (current != Py_None) {
        PyObject *r = PyObject_CallFunctionObjArgs(leave_task, loop, current, NULL);
        if (r == NULL) {
            Py_DECREF(current);
            Py_DECREF(loop);
            return NULL;
        }
        Py_DECREF(r);
    }
    PyObject *r = NULL;
    if (PyContext_Enter(ctx) == 0) {
        r = PyObject_CallOneArg(wakeup, (PyObject *)self);
        if (PyContext_Exit(ctx) < 0) {
            Py_CLEAR(r);
        }
    }
    if (current != Py_None) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *e = PyObject_CallFunctionObjArgs(enter_task, loop, current, NULL);
        if (e == NULL) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            Py_CLEAR(r);
        }
        else {
            Py_DECREF(e);
            PyErr_Restore(type, value, tb);
        }
    }
    Py_DECREF(current);
    Py_DECREF(loop);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* Is a trio task running on this thread (resumed from a trio guest run
 * inside asyncio)?  Then _internals.step sets it aside while the asyncio
 * task runs.  1, 0, or -1 on error. */
static LocalDict trio_run_context = {NULL, NULL, 0, 0, NULL, NULL}; /* GLOBAL_RUN_CONTEXT, once seen */

static int
trio_task_running(void)
{
    if (trio_run_context.local == NULL) {
        PyObject *modules = PyImport_GetModuleDict();
        PyObject *run = PyDict_GetItemWithError(modules, str_trio_run);
        if (run == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        PyObject *ctx = PyObject_GetAttrString(run, "GLOBAL_RUN_CONTEXT");
        if (ctx == NULL) {
            PyErr_Clear();
            return 1;  /* not as expected: let the Python step look */
        }
        int r = local_dict_setup(&trio_run_context, ctx);
        Py_DECREF(ctx);
        if (r < 0) {
            return -1;
        }
    }
    PyObject *dict = local_dict(&trio_run_context);
    if (dict == NULL) {
        PyErr_Clear();
        return 1;
    }
    PyObject *task = local_dict_item(dict, str_task);
    int running = task != NULL && task != Py_None;
    if (task == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        running = 1;
    }
    Py_DECREF(dict);
    return running;
}

/* Is a nesting host (Twisted) loaded?  It tells its coroutines from the
 * stack, where _internals.step is the frame that marks an asyncio task
 * stepped inside one of them: then the step is left to it.  1, 0, or -1. */
static int
nesting_host_loaded(void)
{
    if (nesting == NULL || !PyList_Check(nesting) || PyList_GET_SIZE(nesting) == 0) {
        return 0;
    }
    PyObject *modules = PyImport_GetModuleDict();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(nesting); i++) {
        PyObject *pair = PyList_GET_ITEM(nesting, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) < 1) {
            return 1;
        }
        int found = PyDict_Contains(modules, PyTuple_GET_ITEM(pair, 0));
        if (found != 0) {
            return found;
        }
    }
    return 0;
}

static PyObject *
as_wake(AsyncioSlotCore *self, PyObject *st)
{
    self->queued = 0;
    if (self->cb0 != NULL && self->more == NULL) {
        /* The checks first: they may run Python code, which may change the callbacks. */
        int synchronous = synchronous_mode();
        if (synchronous < 0) {
            return NULL;
        }
        int nested = synchronous ? nesting_host_loaded() : 0;
        if (nested < 0) {
            return NULL;
        }
        int in_trio_task = synchronous && !nested ? trio_task_running() : 0;
        if (in_trio_task < 0) {
            return NULL;
        }
        if (synchronous && !in_trio_task && !nested && self->cb0 != NULL && self->more == NULL
            && self->ctx0 != NULL && PyContext_CheckExact(self->ctx0)) {
            /* The one callback: the waiting task's wake-up. */
            PyObject *wakeup = self->cb0, *ctx = self->ctx0;
            self->cb0 = NULL;
            self->ctx0 = NULL;
            PyObject *r = as_step(self, wakeup, ctx);
            Py_DECREF(wakeup);
            Py_DECREF(ctx);
            return r;
        }
    }
    return PyObject_CallMethodOneArg((PyObject *)self, str_wake_slow, st);
}

/* -- the wait: the slot is what the task's shift runs (through am_send) -- */

static PySendResult
as_am_send(AsyncioSlotCore *self, PyObject *arg, PyObject **result)
{
    PyObject *r;
    switch (self->phase) {
    case PH_FRESH:
        self->phase = PH_WAITING;
        self->blocking = 1;
        *result = Py_NewRef(self);
        return PYGEN_NEXT;
    case PH_WAITING:
        self->phase = PH_OVER;
        if (arg == Py_None && self->base.state == HS_RESUMED && !self->deferred
            && !self->cancel_pending) {
            r = capi->outcome(&self->base);
        }
        else {
            r = PyObject_CallMethodOneArg((PyObject *)self, str_finish_slow, arg);
        }
        *result = r;
        return r == NULL ? PYGEN_ERROR : PYGEN_RETURN;
    default:
        PyErr_SetString(PyExc_RuntimeError, "this shift has already been awaited");
        *result = NULL;
        return PYGEN_ERROR;
    }
}

static PyObject *
as_throw(AsyncioSlotCore *self, PyObject *args)
{
    if (self->phase != PH_WAITING) {
        /* Not waiting here: raise it as a generator that is not running would. */
        self->phase = PH_OVER;
        PyObject *typ, *val = NULL, *tb = NULL;
        if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) {
            return NULL;
        }
        if (PyExceptionInstance_Check(typ)) {
            PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
        }
        else {
            PyErr_SetObject(typ, val);
        }
        return NULL;
    }
    self->phase = PH_OVER;
    PyObject *meth = PyObject_GetAttr((PyObject *)self, str_throw_slow);
    if (meth == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_Call(meth, args, NULL);
    Py_DECREF(meth);
    if (r == NULL) {
        return NULL;
    }
    /* Finished: the iterator way. */
    if (r == Py_None) {
        Py_DECREF(r);
        PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, r);
    Py_DECREF(r);
    if (e != NULL) {
        PyErr_SetObject(PyExc_StopIteration, e);
        Py_DECREF(e);
    }
    return NULL;
}

static PyObject *
as_close(AsyncioSlotCore *self, PyObject *unused)
{
    if (self->phase != PH_WAITING) {
        self->phase = PH_OVER;
        Py_RETURN_NONE;
    }
    self->phase = PH_OVER;
    return PyObject_CallMethodNoArgs((PyObject *)self, str_close_slow);
}

static PyMemberDef as_members[] = {
    {"loop", T_OBJECT, offsetof(AsyncioSlotCore, loop), 0, NULL},
    {"task", T_OBJECT, offsetof(AsyncioSlotCore, task), 0, NULL},
    {"cancel_msg", T_OBJECT, offsetof(AsyncioSlotCore, cancel_msg), 0, NULL},
    {"cancel_pending", T_BOOL, offsetof(AsyncioSlotCore, cancel_pending), 0, NULL},
    {"deferred", T_BOOL, offsetof(AsyncioSlotCore, deferred), 0, NULL},
    {"queued", T_BOOL, offsetof(AsyncioSlotCore, queued), 0, NULL},
    {"_asyncio_future_blocking", T_BOOL, offsetof(AsyncioSlotCore, blocking), 0, NULL},
    {NULL}
};

static PyMethodDef as_methods[] = {
    {"get_loop", (PyCFunction)as_get_loop, METH_NOARGS, NULL},
    {"done", (PyCFunction)as_done, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)as_cancelled, METH_NOARGS, NULL},
    {"add_done_callback", (PyCFunction)(void (*)(void))as_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"result", (PyCFunction)as_result, METH_NOARGS, NULL},
    {"exception", (PyCFunction)as_result, METH_NOARGS, NULL},
    {"check_resumable", (PyCFunction)(void (*)(void))as_check_resumable, METH_FASTCALL, NULL},
    {"_wake", (PyCFunction)as_wake, METH_O, NULL},
    {"throw", (PyCFunction)as_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)as_close, METH_NOARGS, NULL},
    {NULL}
};

/* Only am_send: the slot must not look like a coroutine or an iterator to
 * whoever inspects what a task yields (it has no __await__, send or __next__). */
static PyAsyncMethods as_as_async = {
    .am_send = (sendfunc)as_am_send,
};

static PyTypeObject AsyncioSlotCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._hosts._asyncio._asyncio_c.AsyncioSlotCore",
    .tp_doc = "The compiled part of the slot an asyncio task parked in shift waits on.",
    .tp_basicsize = sizeof(AsyncioSlotCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = as_new,
    .tp_init = (initproc)as_init,
    .tp_traverse = (traverseproc)as_traverse,
    .tp_clear = (inquiry)as_clear,
    .tp_dealloc = (destructor)as_dealloc,
    .tp_as_async = &as_as_async,
    .tp_members = as_members,
    .tp_methods = as_methods,
    .tp_getset = as_getset,
};

/* -- the shift -- */

/* A slot whose wait ended before the task had to suspend, and that nobody
 * else held then (the common case of a callback called at once): its
 * fields are cleared and it is kept for the next shift instead of being
 * freed and allocated again.  It is kept untracked by the collector, so no
 * one can reach it (slots take no weak references).  A slot taken from
 * here stays untracked while the shift's func runs (this C stack holds it
 * then) and is tracked as soon as it outlives the shift in other hands.
 * Slots have no finaliser. */
static AsyncioSlotCore *spare_slot = NULL;

static void
release_slot(AsyncioSlotCore *slot, int tracked)
{
    if (spare_slot == NULL && Py_REFCNT(slot) == 1 && Py_TYPE(slot)->tp_finalize == NULL) {
        if (tracked) {
            PyObject_GC_UnTrack(slot);
        }
        as_clear(slot);  /* may run code: check again below */
        if (spare_slot == NULL && Py_REFCNT(slot) == 1) {
            spare_slot = slot;
            return;
        }
        tracked = 0;
    }
    if (!tracked && Py_REFCNT(slot) > 1) {
        PyObject_GC_Track(slot);
    }
    Py_DECREF(slot);
}

/* shift(func) in ``task`` of ``loop``: (value,) if func resumed the task at
 * once, else the slot to run (it yields itself to the task once). */
/* shift(func) in ``task`` of ``loop``, as a HostShiftFn: 1 with *result the
 * slot to run, 2 with *result the value the task was resumed with before it
 * had to suspend, or -1. */
static int
shift_in_status(PyObject *func, PyObject *loop, PyObject *task, ThreadState *given,
                PyObject **result)
{
    if (slot_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the asyncio core is not set up");
        return -1;
    }
    PyObject *hosting = read_slot(&read_hosting_asyncio, hosting_flag);
    if (hosting == NULL) {
        return -1;
    }
    Py_DECREF(hosting);
    if (hosting == Py_None) {
        PyObject *r = PyObject_CallOneArg(start_hosting, loop);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    ThreadState *st = given != NULL ? (ThreadState *)Py_NewRef(given) : capi->current_state();
    if (st == NULL) {
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)slot_type;
    AsyncioSlotCore *slot;
    int tracked = 1;
    if (spare_slot != NULL && Py_IS_TYPE(spare_slot, tp)) {
        slot = spare_slot;
        spare_slot = NULL;
        tracked = 0;
    }
    else {
        slot = (AsyncioSlotCore *)tp->tp_alloc(tp, 0);
        if (slot == NULL) {
            Py_DECREF(st);
            return -1;
        }
    }
    as_init_new(slot, (PyObject *)st, loop, task);
    Py_DECREF(st);
    int synchronous = synchronous_mode();
    if (synchronous < 0) {
        release_slot(slot, tracked);
        return -1;
    }
    int wait = capi->must_wait(&slot->base, func, continuation_type, synchronous);
    if (wait < 0) {
        release_slot(slot, tracked);
        return -1;
    }
    if (wait) {
        if (!tracked) {
            PyObject_GC_Track(slot);  /* the task will wait on it */
        }
        *result = (PyObject *)slot;
        return 1;
    }
    PyObject *value = capi->outcome(&slot->base);
    release_slot(slot, tracked);
    if (value == NULL) {
        return -1;
    }
    *result = value;
    return 2;
}

/* A HostShiftFn's outcome as its Python function returns it. */
static PyObject *
as_python_result(int status, PyObject *result)
{
    if (status < 0) {
        return NULL;
    }
    if (status == 0) {
        Py_RETURN_NONE;
    }
    if (status == 1) {
        return result;
    }
    PyObject *done = PyTuple_Pack(1, result);
    Py_DECREF(result);
    return done;
}

static PyObject *
shift_in_impl(PyObject *func, PyObject *loop, PyObject *task)
{
    PyObject *result = NULL;
    int status = shift_in_status(func, loop, task, NULL, &result);
    return as_python_result(status, result);
}

static PyObject *
shift_in(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "shift_in(func, loop, task)");
        return NULL;
    }
    return shift_in_impl(args[0], args[1], args[2]);
}

/* shift_if_in_task(func), as a HostShiftFn (the core calls it directly). */
static int
shift_here(PyObject *func, ThreadState *given, PyObject **result)
{
    if (get_running_loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the asyncio core is not set up");
        return -1;
    }
    PyObject *loop = call_noargs(get_running_loop);
    if (loop == NULL) {
        return -1;
    }
    if (loop == Py_None) {
        Py_DECREF(loop);
        return 0;
    }
    PyObject *task = current_task_of(loop);
    if (task == NULL || task == Py_None) {
        Py_DECREF(loop);
        Py_XDECREF(task);
        return task == NULL ? -1 : 0;
    }
    int r = shift_in_status(func, loop, task, given, result);
    Py_DECREF(task);
    Py_DECREF(loop);
    return r;
}

static PyObject *
shift_if_in_task(PyObject *module, PyObject *func)
{
    PyObject *result = NULL;
    int status = shift_here(func, NULL, &result);
    return as_python_result(status, result);
}


/* ------------------------------------------------ the hosting's entry hook */

/* The driver's entry hook while the asyncio runner hosts native code: it
 * stands in for _entry.HOSTING, whose enter/leave it compiles for the common
 * case (no trio run active, a native coroutine that already has its asyncio
 * host, run inside an asyncio task).  Every other case goes to HOSTING's
 * Python methods (AsyncioHosting.enter and _leave are the reference). */

static PyObject *swap_task = NULL;  /* asyncio's _swap_current_task, or None */
static PyObject *current_tasks = NULL; /* asyncio's checked loop -> task dict, or None */
static PyObject *str_cr_frame = NULL;
static PyObject *str_release = NULL;
static PyObject *str_watch = NULL;
static PyObject *str_host_for = NULL;
static PyObject *str_enter = NULL;
static PyObject *str_leave = NULL;
static PyObject *str_enter_in_task = NULL;

typedef struct {
    PyObject_HEAD
    PyObject *hosting;  /* _entry.HOSTING */
} Hook;

static int
hook_traverse(Hook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->hosting);
    return 0;
}

static int
hook_clear(Hook *self)
{
    Py_CLEAR(self->hosting);
    return 0;
}

static void
hook_dealloc(Hook *self)
{
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
hook_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *hosting;
    if (!PyArg_ParseTuple(args, "O:Hook", &hosting)) {
        return NULL;
    }
    Hook *self = (Hook *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->hosting = Py_NewRef(hosting);
    }
    return (PyObject *)self;
}

/* Make task the loop's current task in place of prev (all borrowed; prev
 * is the current task, not None): what _swap_current_task does, or
 * _leave_task(loop, prev) then _enter_task(loop, task). */
static int
swap_tasks(PyObject *loop, PyObject *prev, PyObject *task)
{
    if (current_tasks != Py_None) {
        return PyDict_SetItem(current_tasks, loop, task);
    }
    PyObject *r;
    if (swap_task != Py_None) {
        r = PyObject_CallFunctionObjArgs(swap_task, loop, task, NULL);
    }
    else {
        r = PyObject_CallFunctionObjArgs(leave_task, loop, prev, NULL);
        if (r != NULL) {
            Py_DECREF(r);
            r = PyObject_CallFunctionObjArgs(enter_task, loop, task, NULL);
        }
    }
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* -- free hosts: AsyncioHosting._host_for and _release, their common cases -- */

static PyObject *str_cancelling = NULL;
static PyObject *str_quit_method = NULL;
static Py_ssize_t free_hosts = 0; /* _FREE_HOSTS */

/* _Host.is_clean(): 1, 0, or -1. */
static int
host_is_clean(PyObject *host)
{
    int r = slot_is(&read_host_ended, host, Py_False);
    if (r == 1) {
        r = slot_is(&read_host_quit, host, Py_False);
    }
    if (r == 1) {
        r = slot_is(&read_host_adopted, host, Py_None);
    }
    if (r == 1) {
        r = slot_is(&read_host_cancel_requested, host, Py_False);
    }
    if (r != 1) {
        return r;
    }
    PyObject *task = read_slot(&read_host_task, host);
    if (task == NULL) {
        return -1;
    }
    PyObject *n = PyObject_CallMethodNoArgs(task, str_cancelling);
    Py_DECREF(task);
    if (n == NULL) {
        return -1;
    }
    int cancelling = PyObject_IsTrue(n);
    Py_DECREF(n);
    return cancelling < 0 ? -1 : !cancelling;
}

/* id(loop), as the hosting's dicts of loops hold it (a new reference): the
 * very int object ``loops`` has for it where it has one, so that a look-up
 * finds it without comparing values.  Remembered for the last loop. */
static PyObject *
loop_key(PyObject *loop, PyObject *loops)
{
    static void *last = NULL;
    static PyObject *last_key = NULL;
    if (last_key != NULL && last == (void *)loop) {
        return Py_NewRef(last_key);
    }
    PyObject *key = PyLong_FromVoidPtr(loop);
    if (key == NULL || !PyDict_CheckExact(loops)) {
        return key;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(loops, &pos, &k, &v)) {
        /* Exact ints compare without running Python code. */
        if (v == loop && PyLong_CheckExact(k) && PyObject_RichCompareBool(k, key, Py_EQ) == 1) {
            Py_SETREF(key, Py_NewRef(k));
            Py_XSETREF(last_key, Py_NewRef(k));
            last = (void *)loop;
            break;
        }
    }
    return key;
}

/* The first clean free host of loop, recorded for coro (a new reference),
 * as AsyncioHosting._host_for takes one; NULL without an exception if
 * there is none (the unclean ones it met are dropped, as there), or if the
 * loop is not one the hosting follows: then Python's _host_for decides. */
static PyObject *
take_free_host(PyObject *aio, PyObject *coro, PyObject *loop)
{
    PyObject *loops = NULL, *frees = NULL, *key = NULL, *found = NULL;
    loops = read_slot(&read_loops, aio);
    frees = loops == NULL ? NULL : read_slot(&read_free, aio);
    key = frees == NULL ? NULL : loop_key(loop, loops);
    if (key == NULL) {
        goto done;
    }
    if (!PyDict_CheckExact(loops) || !PyDict_CheckExact(frees)) {
        goto done;
    }
    int known = PyDict_Contains(loops, key);
    if (known <= 0) {
        goto done;
    }
    PyObject *free = PyDict_GetItemWithError(frees, key); /* borrowed */
    if (free == NULL || !PyList_CheckExact(free)) {
        goto done;
    }
    Py_INCREF(free);
    while (PyList_GET_SIZE(free) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(free) - 1;
        PyObject *candidate = Py_NewRef(PyList_GET_ITEM(free, last));
        if (PyList_SetSlice(free, last, last + 1, NULL) < 0) {
            Py_DECREF(candidate);
            break;
        }
        int clean = host_is_clean(candidate);
        if (clean == 1) {
            found = candidate;
            break;
        }
        Py_DECREF(candidate);
        if (clean < 0) {
            break;
        }
    }
    Py_DECREF(free);
    if (found != NULL) {
        /* HostRecords._record */
        PyObject *records = read_slot(&read_records, aio);
        PyObject *ckey = records == NULL ? NULL : id_of(coro);
        int r = ckey == NULL ? -1 : write_slot(&read_host_ref, found, Py_None);
        if (r == 0) {
            r = PyObject_SetItem(records, ckey, found);
        }
        Py_XDECREF(ckey);
        Py_XDECREF(records);
        if (r < 0) {
            Py_CLEAR(found);
        }
    }
done:
    Py_XDECREF(key);
    Py_XDECREF(frees);
    Py_XDECREF(loops);
    return found;
}

/* HostRecords._release with AsyncioHosting's _keep_free: 0, or -1. */
static int
release_host(PyObject *aio, PyObject *coro, PyObject *host)
{
    PyObject *records = read_slot(&read_records, aio);
    PyObject *key = records == NULL ? NULL : id_of(coro);
    if (key == NULL) {
        Py_XDECREF(records);
        return -1;
    }
    /* _forget */
    PyObject *mine = mapping_get(records, key);
    int r = mine == NULL ? -1 : 0;
    if (mine == host) {
        r = PyObject_DelItem(records, key);
    }
    Py_XDECREF(mine);
    Py_DECREF(key);
    Py_DECREF(records);
    if (r < 0 || write_slot(&read_host_ref, host, Py_None) < 0) {
        return -1;
    }
    int clean = host_is_clean(host);
    if (clean < 0) {
        return -1;
    }
    if (clean) {
        /* _keep_free */
        PyObject *loop = read_slot(&read_host_loop, host);
        PyObject *frees = loop == NULL ? NULL : read_slot(&read_free, aio);
        PyObject *loops = frees == NULL ? NULL : read_slot(&read_loops, aio);
        PyObject *lkey = loops == NULL ? NULL : loop_key(loop, loops);
        int kept = -1;
        if (lkey != NULL && PyDict_CheckExact(frees) && PyDict_CheckExact(loops)) {
            PyObject *free = PyDict_GetItemWithError(frees, lkey); /* borrowed */
            if (free == NULL && !PyErr_Occurred()) {
                PyObject *empty = PyList_New(0);
                free = empty == NULL ? NULL : PyDict_SetDefault(frees, lkey, empty);
                Py_XDECREF(empty);
            }
            if (free != NULL && !PyList_CheckExact(free)) {
                kept = -2; /* not as expected: Python's */
            }
            else if (free != NULL) {
                kept = 0;
                if (PyList_GET_SIZE(free) < free_hosts) {
                    int known = PyDict_Contains(loops, lkey);
                    kept = known < 0 ? -1 : known;
                    if (kept == 1 && PyList_Append(free, host) < 0) {
                        kept = -1;
                    }
                }
            }
        }
        else if (lkey != NULL) {
            kept = -2; /* not as expected: Python's */
        }
        Py_XDECREF(lkey);
        Py_XDECREF(loops);
        Py_XDECREF(frees);
        Py_XDECREF(loop);
        if (kept == -1) {
            return -1;
        }
        if (kept == -2) {
            PyObject *res = PyObject_CallMethodObjArgs(aio, str_release, coro, host, NULL);
            Py_XDECREF(res);
            return res == NULL ? -1 : 0;
        }
        if (kept == 1) {
            return 0;
        }
    }
    PyObject *res = PyObject_CallMethodOneArg(aio, str_quit_method, host);
    Py_XDECREF(res);
    return res == NULL ? -1 : 0;
}

/* AsyncioHosting.enter(coro, True) as Hosting.enter calls it when no trio
 * run is active: the token, or NULL without an exception for "ask Python". */
static PyObject *
fast_enter(Hook *self, PyObject *coro)
{
    PyObject *hosting = self->hosting;
    if (current_task == NULL || swap_task == NULL || current_tasks == NULL) {
        return NULL;  /* not set up: Python decides */
    }
    PyObject *loop = NULL, *prev = NULL, *aio = NULL, *records = NULL, *key = NULL;
    PyObject *task = NULL, *token = NULL;
    int failed = 0;
    PyObject *trio = read_slot(&read_hosting_trio, hosting);
    if (trio == NULL) {
        return NULL;
    }
    if (trio != Py_None) {
        /* A trio run is active: HOSTING.enter asks it first (a trio task
         * may be running here), then the asyncio part, as below.  Only a
         * compiled enter_in_task is asked from here: it runs no Python code
         * where a Ctrl-C could land; the Python one is asked by HOSTING's
         * enter, which trio protects. */
        PyObject *enter = _PyType_Lookup(Py_TYPE(trio), str_enter_in_task); /* borrowed */
        if (enter == NULL || PyFunction_Check(enter)) {
            Py_DECREF(trio);
            return NULL;  /* Python decides */
        }
        token = PyObject_CallMethodOneArg(trio, str_enter_in_task, coro);
        Py_DECREF(trio);
        if (token != Py_None) {
            return token;  /* or NULL with its error */
        }
        Py_CLEAR(token);
    }
    else {
        Py_DECREF(trio);
    }
    aio = read_slot(&read_hosting_asyncio, hosting);
    if (aio == NULL || aio == Py_None) {
        goto done;
    }
    loop = call_noargs(get_running_loop);
    if (loop == NULL || loop == Py_None) {
        goto done;
    }
    prev = current_task_of(loop);
    if (prev == NULL || prev == Py_None) {
        goto done;
    }
    records = read_slot(&read_records, aio);
    key = records == NULL ? NULL : id_of(coro);
    if (key == NULL || !PyDict_CheckExact(records)) {
        goto done;
    }
    PyObject *host = PyDict_GetItemWithError(records, key);  /* borrowed */
    if (host == NULL && PyErr_Occurred()) {
        goto done;
    }
    Py_XINCREF(host);
    if (host == NULL || slot_is(&read_host_loop, host, loop) != 1
        || slot_is(&read_host_ended, host, Py_False) != 1) {
        /* No live host of this loop yet: AsyncioHosting._host_for finds a
         * free one or starts one, as the reference's enter does. */
        Py_XDECREF(host);
        if (PyErr_Occurred()) {
            goto done;
        }
        host = take_free_host(aio, coro, loop);
        if (host == NULL && PyErr_Occurred()) {
            /* It may have taken hosts off the free list: the error is
             * raised here, as the reference's _host_for raises it. */
            failed = 1;
            goto done;
        }
        if (host == NULL) {
            host = PyObject_CallMethodObjArgs(aio, str_host_for, coro, loop, NULL);
        }
        if (host == NULL || host == Py_None) {
            Py_XDECREF(host);
            goto done;  /* None: Python's enter goes on from here */
        }
    }
    if ((task = read_slot(&read_host_task, host)) == NULL) {
        Py_DECREF(host);
        goto done;
    }
    if (swap_tasks(loop, prev, task) == 0) {
        token = PyTuple_Pack(7, (PyObject *)self, loop, prev, task, coro, host, aio);
        if (token == NULL) {
            /* Out of memory: put the resumer's task back before failing. */
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            if (swap_tasks(loop, task, prev) < 0) {
                PyErr_Clear();
            }
            PyErr_Restore(type, exc, tb);
        }
    }
    /* A failed swap is an error, as the reference's would be; after the swap,
     * Python must not try again. */
    failed = token == NULL;
    Py_DECREF(host);
done:
    Py_XDECREF(task);
    Py_XDECREF(key);
    Py_XDECREF(records);
    Py_XDECREF(prev);
    Py_XDECREF(loop);
    Py_XDECREF(aio);
    if (token == NULL && PyErr_Occurred()) {
        if (failed || !PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;  /* and KeyboardInterrupt and the like are never swallowed */
        }
        PyErr_Clear();  /* Python's enter meets it again, and says so */
    }
    return token;
}

static PyObject *
hook_enter_impl(PyObject *hook, PyObject *st, PyObject *coro)
{
    Hook *self = (Hook *)hook;
    PyObject *token = fast_enter(self, coro);
    if (token != NULL || PyErr_Occurred()) {
        return token;
    }
    PyObject *call[3] = {self->hosting, st, coro};
    return PyObject_VectorcallMethod(str_enter, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *
hook_enter(Hook *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "enter(st, coro)");
        return NULL;
    }
    return hook_enter_impl((PyObject *)self, args[0], args[1]);
}

/* HostRecords._after_step: release the host of a finished coroutine, or
 * watch a suspended one (both rare, and Python's). */
static int
after_step(PyObject *aio, PyObject *coro, PyObject *host)
{
    PyObject *frame = coro_frame(coro, str_cr_frame);
    if (frame == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();  /* not a coroutine: never counted as finished */
    }
    else if (frame == Py_None) {
        Py_DECREF(frame);
        return release_host(aio, coro, host);
    }
    else {
        Py_DECREF(frame);
    }
    int unwatched = slot_is(&read_host_ref, host, Py_None);
    if (unwatched <= 0) {
        return unwatched;
    }
    PyObject *records = read_slot(&read_records, aio);
    PyObject *key = records == NULL ? NULL : id_of(coro);
    PyObject *r = NULL;
    if (key != NULL) {
        r = mapping_get(records, key);
    }
    Py_XDECREF(key);
    Py_XDECREF(records);
    if (r == NULL) {
        return -1;
    }
    int mine = r == host;
    Py_DECREF(r);
    if (!mine) {
        return 0;
    }
    r = PyObject_CallMethodObjArgs(aio, str_watch, coro, host, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static PyObject *
hook_leave(PyObject *hook, PyObject *token)
{
    Hook *self = (Hook *)hook;
    if (!PyTuple_CheckExact(token) || PyTuple_GET_SIZE(token) != 7
        || PyTuple_GET_ITEM(token, 0) != (PyObject *)self) {
        if (PyTuple_CheckExact(token) && PyTuple_GET_SIZE(token) > 0
            && PyCFunction_Check(PyTuple_GET_ITEM(token, 0))) {
            /* Another part's compiled token: what HOSTING.leave does with
             * it (a Python one goes through HOSTING.leave, which trio
             * protects from Ctrl-C). */
            return PyObject_CallOneArg(PyTuple_GET_ITEM(token, 0), token);
        }
        PyObject *call[2] = {self->hosting, token};
        return PyObject_VectorcallMethod(str_leave, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
    }
    PyObject *loop = PyTuple_GET_ITEM(token, 1);
    PyObject *prev = PyTuple_GET_ITEM(token, 2);
    PyObject *task = PyTuple_GET_ITEM(token, 3);
    if (swap_tasks(loop, task, prev) < 0) {
        return NULL;
    }
    if (after_step(PyTuple_GET_ITEM(token, 6), PyTuple_GET_ITEM(token, 4),
                   PyTuple_GET_ITEM(token, 5)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef hook_methods[] = {
    {"enter", (PyCFunction)(void (*)(void))hook_enter, METH_FASTCALL,
     "Make coro's host task current; returns what leave needs, or None."},
    {"leave", hook_leave, METH_O, "Undo enter, with its token."},
    {NULL}
};

static PyTypeObject Hook_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._hosts._asyncio._asyncio_c.Hook",
    .tp_doc = "Hook(hosting): the hosting's entry hook, compiled for asyncio.",
    .tp_basicsize = sizeof(Hook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = hook_new,
    .tp_traverse = (traverseproc)hook_traverse,
    .tp_clear = (inquiry)hook_clear,
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_methods = hook_methods,
};

static PyObject *
setup(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "get_running_loop", "current_task", "enter_task", "leave_task", "runner",
        "hosting", "start_hosting", "slot_type", "continuation_type", "nesting", "swap",
        "current_tasks", "free_hosts", NULL};
    PyObject *a[12];
    Py_ssize_t nfree;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOOOn:setup", kwlist, &a[0], &a[1],
                                     &a[2], &a[3], &a[4], &a[5], &a[6], &a[7], &a[8],
                                     &a[9], &a[10], &a[11], &nfree)) {
        return NULL;
    }
    if (!PyType_Check(a[7]) || !PyType_IsSubtype((PyTypeObject *)a[7], &AsyncioSlotCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "slot_type must be a subclass of AsyncioSlotCore");
        return NULL;
    }
    /* A Python subclass does not inherit am_send, through which the task's
     * shift runs the slot (PyIter_Send): give it that of the compiled slot. */
    PyTypeObject *tp = (PyTypeObject *)a[7];
    if (tp->tp_as_async == NULL) {
        PyErr_SetString(PyExc_TypeError, "slot_type has no async methods to extend");
        return NULL;
    }
    tp->tp_as_async->am_send = (sendfunc)as_am_send;
    PyType_Modified(tp);
    Py_XSETREF(get_running_loop, Py_NewRef(a[0]));
    Py_XSETREF(current_task, Py_NewRef(a[1]));
    /* The checked getter is asyncio's own dict's get, where the internals
     * passed their check: the dict is then read directly, as get reads it. */
    Py_CLEAR(current_task_dict);
#if PY_VERSION_HEX < 0x030C0000
    found_loop = NULL;  /* found in the dict let go */
#endif
    if (PyCFunction_Check(a[1]) && PyCFunction_GET_SELF(a[1]) != NULL
        && PyDict_CheckExact(PyCFunction_GET_SELF(a[1]))
        && strcmp(((PyCFunctionObject *)a[1])->m_ml->ml_name, "get") == 0) {
        current_task_dict = Py_NewRef(PyCFunction_GET_SELF(a[1]));
    }
    Py_XSETREF(enter_task, Py_NewRef(a[2]));
    Py_XSETREF(leave_task, Py_NewRef(a[3]));
    Py_XSETREF(runner, Py_NewRef(a[4]));
    Py_XSETREF(hosting_flag, Py_NewRef(a[5]));
    Py_XSETREF(start_hosting, Py_NewRef(a[6]));
    Py_XSETREF(slot_type, Py_NewRef(a[7]));
    Py_XSETREF(continuation_type, Py_NewRef(a[8]));
    Py_XSETREF(nesting, Py_NewRef(a[9]));
    if (a[11] != Py_None && !PyDict_CheckExact(a[11])) {
        PyErr_SetString(PyExc_TypeError, "current_tasks must be a dict or None");
        return NULL;
    }
    free_hosts = nfree;
    Py_XSETREF(swap_task, Py_NewRef(a[10]));
    Py_XSETREF(current_tasks, Py_NewRef(a[11]));
    Py_RETURN_NONE;
}

/* setup_slot_reads(hosting_type, asyncio_hosting_type, host_type) */
static PyObject *
setup_slot_reads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_slot_reads(hosting_type, asyncio_hosting_type, host_type)");
        return NULL;
    }
    if (runner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the asyncio part is not set up");
        return NULL;
    }
    /* The class each of all_reads reads from, in its order: the hosting's
     * two, asyncio's part's three, then its hosts', then dneio's own
     * runner's. */
    PyObject *types[N_READS];
    for (size_t i = 0; i < N_READS; i++) {
        types[i] = i == N_READS - 1 ? (PyObject *)Py_TYPE(runner) : args[i < 2 ? 0 : i < 5 ? 1 : 2];
    }
    if (slot_reads_setup(all_reads, types, N_READS) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
slot_reads(PyObject *module, PyObject *unused)
{
    return slot_reads_by_offset(all_reads, N_READS);
}

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "Register what the compiled asyncio shift needs from the runner."},
    {"setup_slot_reads", (PyCFunction)(void (*)(void))setup_slot_reads, METH_FASTCALL,
     "Read the hosting's, its asyncio part's and its hosts' attributes at their slots' "
     "offsets where they are plain slots of these classes."},
    {"slot_reads", slot_reads, METH_NOARGS,
     "Which attribute reads go by offset now, as 'Class.name'."},
    {"shift_in", (PyCFunction)(void (*)(void))shift_in, METH_FASTCALL,
     "shift_in(func, loop, task): (value,) if the task may go on, else the slot to run."},
    {"shift_if_in_task", shift_if_in_task, METH_O,
     "shift_in(func, loop, task) for the asyncio task running here; None if there is none."},
    {NULL}
};

static struct PyModuleDef asyncio_c_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dneio._hosts._asyncio._asyncio_c",
    .m_doc = "The compiled part of dneio's asyncio runner.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__asyncio_c(void)
{
    capi = (DneioCAPI *)PyCapsule_Import(DNEIO_CAPI_NAME, 0);
    if (capi == NULL) {
        return NULL;
    }
    if (capi->version != DNEIO_CAPI_VERSION) {
        PyErr_SetString(PyExc_ImportError, "dneio: the compiled core is of another version");
        return NULL;
    }
    AsyncioSlotCore_Type.tp_base = capi->slot_type;
    if (PyType_Ready(&AsyncioSlotCore_Type) < 0 || PyType_Ready(&Hook_Type) < 0
        || capi->add_hook_type(&Hook_Type, hook_enter_impl, hook_leave) < 0) {
        return NULL;
    }
    str_synchronous = PyUnicode_InternFromString("synchronous");
    str_asyncio = PyUnicode_InternFromString("asyncio");
    str_trio_run = PyUnicode_InternFromString("trio._core._run");
    str_wake_slow = PyUnicode_InternFromString("_wake_slow");
    str_check_resumable_slow = PyUnicode_InternFromString("_check_resumable_slow");
    str_finish_slow = PyUnicode_InternFromString("_finish_slow");
    str_throw_slow = PyUnicode_InternFromString("_throw_slow");
    str_close_slow = PyUnicode_InternFromString("_close_slow");
    str_result_slow = PyUnicode_InternFromString("_result_slow");
    str_call_soon = PyUnicode_InternFromString("call_soon");
    str_context = PyUnicode_InternFromString("context");
    str_task = PyUnicode_InternFromString("task");
    str_dict = PyUnicode_InternFromString("__dict__");
    str_trio = PyUnicode_InternFromString("trio");
    str_records = PyUnicode_InternFromString("records");
    str_loop = PyUnicode_InternFromString("loop");
    str_ended = PyUnicode_InternFromString("ended");
    str_ref = PyUnicode_InternFromString("ref");
    str_cr_frame = PyUnicode_InternFromString("cr_frame");
    str_release = PyUnicode_InternFromString("_release");
    str_watch = PyUnicode_InternFromString("_watch");
    str_host_for = PyUnicode_InternFromString("_host_for");
    str_enter = PyUnicode_InternFromString("enter");
    str_leave = PyUnicode_InternFromString("leave");
    str_free = PyUnicode_InternFromString("free");
    str_loops = PyUnicode_InternFromString("loops");
    str_quit = PyUnicode_InternFromString("quit");
    str_adopted = PyUnicode_InternFromString("adopted");
    str_cancel_requested = PyUnicode_InternFromString("cancel_requested");
    str_cancelling = PyUnicode_InternFromString("cancelling");
    str_quit_method = PyUnicode_InternFromString("_quit");
    str_enter_in_task = PyUnicode_InternFromString("enter_in_task");
    PyObject *m = PyModule_Create(&asyncio_c_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "AsyncioSlotCore", (PyObject *)&AsyncioSlotCore_Type) < 0
        || PyModule_AddObjectRef(m, "Hook", (PyObject *)&Hook_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* The registry lists this module's shift_if_in_task: the core calls
     * shift_here for it. */
    PyObject *listed = PyObject_GetAttrString(m, "shift_if_in_task");
    int added = listed == NULL ? -1 : capi->add_host_shift(listed, shift_here);
    Py_XDECREF(listed);
    if (added < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
