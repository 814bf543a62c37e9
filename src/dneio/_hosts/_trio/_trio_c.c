/* The compiled part of the trio runner: a task's shift, the parking slot it
 * waits on, and its synchronous wake-up (one step of the task, the way
 * trio's run loop takes it).
 *
 * It mirrors _runner.py and _internals.py, which stay the reference:
 * PyTrioSlotCore there is the pure-Python twin of TrioSlotCore here, and
 * every unusual case (the deferred mode, instruments that watch task steps,
 * a run that is not this thread's, an asyncio loop running on this thread,
 * a task that finishes, or yields anything but a wait, a pending
 * cancellation or Ctrl-C) is handed to the Python functions, which run
 * protected from KeyboardInterrupt the way trio protects its own code.
 * This file runs no Python code between claiming a task and stepping it,
 * and none between the step and its bookkeeping, so a Ctrl-C cannot land
 * in between: the interpreter only delivers it while Python code runs.
 * It is only set up where _internals.check() and compiled_step_problem()
 * found trio's internals to be the ones it was written against.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_driver_c_api.h"
#include "_fast_reads.h"

static DneioCAPI *capi = NULL;

/* Registered by setup(). */
static PyObject *runner = NULL;            /* the TrioRunner (its synchronous flag, _wait) */
static PyObject *hosting_flag = NULL;      /* _entry.HOSTING (its trio attribute) */
static PyObject *start_hosting = NULL;     /* NativeHosting.start_if_running */
static PyObject *slot_type = NULL;         /* _runner.TrioSlot */
static PyObject *continuation_type = NULL; /* _runner.TrioContinuation */
static PyObject *wait_type = NULL;         /* trio's WaitTaskRescheduled */
static PyObject *woken = NULL;             /* what a synchronous wake-up sends */
static PyObject *py_step = NULL;           /* _internals.step(task, send) */
static PyObject *py_after_send = NULL;     /* _internals.after_send(task, runner, kind, x) */
static PyObject *py_deliver_cancel = NULL; /* _internals.deliver_pending_cancel(task) */
static PyObject *py_after_task_step = NULL; /* _internals.after_task_step(task, runner) */
static PyObject *current_trio_token = NULL; /* trio.lowlevel.current_trio_token */
/* May a WaitTaskRescheduled be made without calling its class (which runs
 * the __init__ attrs wrote)?  setup() is told, by a check in Python. */
static int fast_trap = 0;

static PyObject *str_dict, *str_task, *str_runner, *str_task_runner, *str_trio;
static PyObject *str_trio_token, *str_abort, *str_abort_func, *str_trap_abort, *str_custom_sleep_data;
static PyObject *str_coro, *str_context, *str_instruments, *str_data;
static PyObject *str_before_task_step, *str_after_task_step, *str_schedule_points;
static PyObject *str_cancel_points, *str_ki_pending, *str_main_task, *str_cancel_status;
static PyObject *str_effectively_cancelled, *str_unwrap, *str_wait;
static PyObject *str_check_resumable_slow, *str_wake_slow, *str_try_cancel, *str_asyncio;
static PyObject *str_abort_with_stop;
static PyObject *abort_succeeded = NULL, *abort_failed = NULL; /* trio.lowlevel.Abort */
static PyObject *one = NULL;
static PyObject *empty_tuple = NULL;
static PyObject *delivered_nothing = NULL;  /* (True, None): a reply taken before the task waited */

enum {
    PH_FRESH,   /* not awaited yet */
    PH_WAITING, /* yielded its trap to the run loop, which parked the task */
    PH_OVER,    /* the wait is over */
};

typedef struct {
    SlotCore base;
    PyObject *task;
    PyObject *token;
    PyObject *trap; /* the WaitTaskRescheduled the task waits on, made before func runs */
    int phase;
} TrioSlotCore;

static PyTypeObject TrioSlotCore_Type;

/* The fields of a fresh wait, in a slot whose object fields hold nothing
 * (just allocated, or emptied by ts_init_fields). */
static inline void
ts_init_new(TrioSlotCore *self, PyObject *home, PyObject *task, PyObject *token)
{
    self->base.home = Py_NewRef(home);
    self->base.value = Py_NewRef(Py_None);
    self->base.k_ref = Py_NewRef(Py_None);
    self->base.state = HS_PENDING;
    self->base.is_exc = 0;
    self->base.shielded = 0;
    self->task = Py_NewRef(task);
    self->token = Py_NewRef(token);
    self->phase = PH_FRESH;
}

/* The same for a slot that may hold references already (its __init__):
 * they are released once the new fields are in place. */
static int
ts_init_fields(TrioSlotCore *self, PyObject *home, PyObject *task, PyObject *token)
{
    PyObject *old[] = {self->base.home, self->base.value, self->base.k_ref, self->task,
                       self->token, self->trap};
    self->trap = NULL;
    ts_init_new(self, home, task, token);
    for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
        Py_XDECREF(old[i]);
    }
    return 0;
}

static PyObject *
ts_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    TrioSlotCore *self = (TrioSlotCore *)type->tp_alloc(type, 0);
    if (self != NULL) {
        ts_init_new(self, Py_None, Py_None, Py_None);
    }
    return (PyObject *)self;
}

static int
ts_init(TrioSlotCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *home, *task, *token;
    if (!PyArg_ParseTuple(args, "OOO:TrioSlot", &home, &task, &token)) {
        return -1;
    }
    return ts_init_fields(self, home, task, token);
}

static int
ts_traverse(TrioSlotCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->task);
    Py_VISIT(self->token);
    Py_VISIT(self->trap);
    return capi->slot_type->tp_traverse((PyObject *)self, visit, arg);
}

static int
ts_clear(TrioSlotCore *self)
{
    Py_CLEAR(self->task);
    Py_CLEAR(self->token);
    Py_CLEAR(self->trap);
    return capi->slot_type->tp_clear((PyObject *)self);
}

static void
ts_dealloc(TrioSlotCore *self)
{
    /* Instances of Python subclasses have their type released by its dealloc. */
    PyObject_GC_UnTrack(self);
    ts_clear(self);
    capi->free_instance((PyObject *)self);
}

/* -- trio's run context ------------------------------------------------------ */

/* trio's GLOBAL_RUN_CONTEXT (.local), and this thread's dict of it (see
 * _fast_reads.h). */
static LocalDict run_context_dict = {NULL, NULL, 0, 0, NULL, NULL};

/* This thread's dict of GLOBAL_RUN_CONTEXT (a new reference), or NULL with
 * an exception set. */
static inline PyObject *
context_dict(void)
{
    return local_dict(&run_context_dict);
}

/* The same, where the core's ThreadState of this thread is known (or NULL). */
static inline PyObject *
context_dict_of(ThreadState *st)
{
    return local_dict_of(&run_context_dict, (PyObject *)st);
}

/* trio's current task in ``d``, this thread's dict of its run context
 * (borrowed), or NULL: none, or an error with an exception set. */
static inline PyObject *
context_task(PyObject *d)
{
    return local_dict_item(d, str_task);
}

/* -- reading the slots of trio's and the hosting's objects ---------------------- */

static PyObject *str_run, *str_ended, *str_ref, *str_records;

static SlotRead read_task_runner = SLOT_READ(str_task_runner); /* Task._runner */
static SlotRead read_trio_token = SLOT_READ(str_trio_token);   /* Runner.trio_token */
static SlotRead read_host_run = SLOT_READ(str_run);            /* _Host.run */
static SlotRead read_host_ended = SLOT_READ(str_ended);        /* _Host.ended */
static SlotRead read_host_task = SLOT_READ(str_task);          /* _Host.task */
static SlotRead read_host_ref = SLOT_READ(str_ref);            /* _Host.ref */
static SlotRead read_run_runner = SLOT_READ(str_runner);       /* _Run.runner */
static SlotRead read_hosting_trio = SLOT_READ(str_trio);       /* _entry.Hosting.trio */
static SlotRead read_records = SLOT_READ(str_records);         /* NativeHosting.records */
static PyObject *str_synchronous;
static SlotRead read_synchronous = SLOT_READ(str_synchronous); /* TrioRunner.synchronous */

static SlotRead *const all_reads[] = {
    &read_task_runner, &read_trio_token, &read_host_run, &read_host_ended, &read_host_task,
    &read_host_ref, &read_run_runner, &read_hosting_trio, &read_records, &read_synchronous};
#define N_READS (sizeof(all_reads) / sizeof(all_reads[0]))

/* setup_slot_reads(task_type, runner_type, host_type, run_type, hosting_type,
 * native_hosting_type) */
static PyObject *
setup_slot_reads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_slot_reads(task_type, runner_type, host_type, run_type, "
                        "hosting_type, native_hosting_type)");
        return NULL;
    }
    if (runner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio part is not set up");
        return NULL;
    }
    /* The class each of all_reads reads from, in its order; the last is
     * dneio's own runner's. */
    PyObject *types[N_READS] = {args[0], args[1], args[2], args[2], args[2],
                                args[2], args[3], args[4], args[5], (PyObject *)Py_TYPE(runner)};
    if (slot_reads_setup(all_reads, types, N_READS) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Which of the reads go by offset now, as "Class.name" (for tests). */
static PyObject *
slot_reads(PyObject *module, PyObject *unused)
{
    return slot_reads_by_offset(all_reads, N_READS);
}

/* Is obj's attribute name true?  1, 0, or -1. */
static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

static int
synchronous_mode(void)
{
    return slot_true(&read_synchronous, runner);
}

/* Does an asyncio loop run on this thread (a trio guest run inside asyncio)?
 * Then the Python step sets its current task aside.  1, 0, or -1. */
static int
asyncio_loop_running(void)
{
    PyObject *modules = PyImport_GetModuleDict();
    PyObject *asyncio = PyDict_GetItemWithError(modules, str_asyncio);
    if (asyncio == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *loop = PyObject_CallMethod(asyncio, "_get_running_loop", NULL);
    if (loop == NULL) {
        return -1;
    }
    int running = loop != Py_None;
    Py_DECREF(loop);
    return running;
}

/* Does an instrument watch task steps?  1, 0, or -1. */
static int
steps_watched(PyObject *trio_runner)
{
    PyObject *instruments = PyObject_GetAttr(trio_runner, str_instruments);
    if (instruments == NULL) {
        return -1;
    }
    PyObject *hooks = instruments;
    if (!PyDict_Check(hooks)) {
        /* A UserDict (trio 0.23 and later): its dict. */
        hooks = PyObject_GetAttr(instruments, str_data);
        Py_DECREF(instruments);
        if (hooks == NULL) {
            return -1;
        }
        instruments = hooks;
        if (!PyDict_Check(hooks)) {
            Py_DECREF(hooks);
            return 1; /* not as expected: the Python step asks it */
        }
    }
    int watched = PyDict_Contains(hooks, str_before_task_step);
    if (watched == 0) {
        watched = PyDict_Contains(hooks, str_after_task_step);
    }
    Py_DECREF(instruments);
    return watched;
}

/* obj.name += 1 */
static int
count_one(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        return -1;
    }
    PyObject *w = PyNumber_Add(v, one);
    Py_DECREF(v);
    if (w == NULL) {
        return -1;
    }
    int r = PyObject_SetAttr(obj, name, w);
    Py_DECREF(w);
    return r;
}

/* What follows the task's send in trio's run loop, in the common case: the
 * task parked on a WaitTaskRescheduled, with no Ctrl-C for it to take.
 * 1 if done here, 0 if Python must do it (nothing changed), -1 on error. */
static int
after_wait(PyObject *task, PyObject *trio_runner, PyObject *msg)
{
    int ki = attr_true(trio_runner, str_ki_pending);
    if (ki < 0) {
        return -1;
    }
    if (ki) {
        PyObject *main = PyObject_GetAttr(trio_runner, str_main_task);
        if (main == NULL) {
            return -1;
        }
        Py_DECREF(main);
        if (main == task) {
            return 0;
        }
    }
    PyObject *abort = PyObject_GetAttr(msg, str_trap_abort);
    if (abort == NULL) {
        return -1;
    }
    int r = 0;
    if (count_one(task, str_schedule_points) < 0 || count_one(task, str_cancel_points) < 0
        || PyObject_SetAttr(task, str_abort_func, abort) < 0) {
        r = -1;
    }
    Py_DECREF(abort);
    if (r < 0) {
        return -1;
    }
    /* _attempt_delivery_of_any_pending_cancel() does nothing unless the
     * task's cancel status is effectively cancelled. */
    PyObject *status = PyObject_GetAttr(task, str_cancel_status);
    if (status == NULL) {
        return -1;
    }
    int cancelled = attr_true(status, str_effectively_cancelled);
    Py_DECREF(status);
    if (cancelled < 0) {
        return -1;
    }
    if (cancelled) {
        PyObject *res = PyObject_CallOneArg(py_deliver_cancel, task);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return 1;
}

/* _internals.step(task, send), compiled for the common case. */
static PyObject *
step(PyObject *task, PyObject *send)
{
    if (py_step == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio core is not set up");
        return NULL;
    }
    /* Held: a disable() meanwhile (the Python it may run) cannot take it. */
    PyObject *fallback = Py_NewRef(py_step);
    PyObject *d = context_dict();
    if (d == NULL) {
        Py_DECREF(fallback);
        return NULL;
    }
    PyObject *trio_runner = read_slot(&read_task_runner, task);
    PyObject *coro = NULL, *context = NULL, *prev = NULL, *msg = NULL;
    PyObject *result = NULL;
    if (trio_runner == NULL) {
        goto done;
    }
    PyObject *running = PyDict_GetItemWithError(d, str_runner); /* borrowed */
    if (running == NULL && PyErr_Occurred()) {
        goto done;
    }
    int python = running != trio_runner;
    if (!python) {
        python = asyncio_loop_running();
    }
    if (python == 0) {
        python = steps_watched(trio_runner);
    }
    if (python == 0) {
        coro = PyObject_GetAttr(task, str_coro);
        context = coro == NULL ? NULL : PyObject_GetAttr(task, str_context);
        if (context == NULL) {
            python = -1;
        }
        else if (!PyContext_CheckExact(context)) {
            python = 1;
        }
    }
    if (python) {
        if (python > 0) {
            result = PyObject_CallFunctionObjArgs(fallback, task, send, NULL);
        }
        goto done;
    }
    /* From here to the send, and from the send to its bookkeeping, no
     * Python code runs. */
    prev = PyDict_GetItemWithError(d, str_task);
    if (prev == NULL && PyErr_Occurred()) {
        goto done;
    }
    Py_XINCREF(prev);
    /* What Runner.reschedule does, minus queueing. */
    if (PyObject_SetAttr(task, str_abort_func, Py_None) < 0
        || PyObject_SetAttr(task, str_custom_sleep_data, Py_None) < 0
        || PyDict_SetItem(d, str_task, task) < 0) {
        goto restore;
    }
    if (PyContext_Enter(context) < 0) {
        goto restore;
    }
    PySendResult sent = PyIter_Send(coro, send, &msg);
    if (PyContext_Exit(context) < 0) {
        /* Cannot happen: the context entered above is the current one. */
        Py_CLEAR(msg);
        goto restore;
    }
    int handled = 0;
    if (sent == PYGEN_NEXT && Py_TYPE(msg) == (PyTypeObject *)wait_type) {
        handled = after_wait(task, trio_runner, msg);
        if (handled < 0) {
            goto restore;
        }
    }
    if (!handled) {
        /* Finished, raised, or anything unusual: the Python bookkeeping. */
        PyObject *kind, *x;
        if (sent == PYGEN_ERROR) {
            kind = PyUnicode_FromString("raised");
            x = take_exception();
        }
        else {
            kind = PyUnicode_FromString(sent == PYGEN_NEXT ? "yielded" : "returned");
            x = msg;
            msg = NULL;
        }
        if (kind == NULL) {
            Py_XDECREF(x);
            goto restore;
        }
        PyObject *r = PyObject_CallFunctionObjArgs(py_after_send, task, trio_runner, kind, x,
                                                   NULL);
        Py_DECREF(kind);
        Py_XDECREF(x);
        if (r == NULL) {
            goto restore;
        }
        Py_DECREF(r);
    }
    /* An instrument added during the step sees its end, as in trio's loop. */
    int watched = steps_watched(trio_runner);
    if (watched < 0) {
        goto restore;
    }
    if (watched) {
        PyObject *r = PyObject_CallFunctionObjArgs(py_after_task_step, task, trio_runner, NULL);
        if (r == NULL) {
            goto restore;
        }
        Py_DECREF(r);
    }
    result = Py_NewRef(Py_None);
restore:
    Py_XDECREF(msg);
    {
        /* Put back the task that was current, even after an error. */
        PyObject *exc = take_exception();
        int r = prev == NULL ? PyDict_DelItem(d, str_task) : PyDict_SetItem(d, str_task, prev);
        if (r < 0) {
            if (exc == NULL) {
                Py_CLEAR(result);
                exc = take_exception();
            }
            else {
                PyErr_Clear();
            }
        }
        if (exc != NULL) {
            give_exception(exc);
        }
    }
done:
    Py_XDECREF(prev);
    Py_XDECREF(context);
    Py_XDECREF(coro);
    Py_XDECREF(trio_runner);
    Py_DECREF(d);
    Py_DECREF(fallback);
    return result;
}

static PyObject *
step_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "step(task, send)");
        return NULL;
    }
    if (py_step == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio core is not set up");
        return NULL;
    }
    return step(args[0], args[1]);
}

/* -- dneio's side of the slot ------------------------------------------------ */

static PyObject *
ts_check_resumable(TrioSlotCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "check_resumable(k, here)");
        return NULL;
    }
    int here = PyObject_IsTrue(args[1]);
    if (here <= 0) {
        /* Not here: run_sync_soon says if the run is over, and nothing is claimed then. */
        return here < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (py_step == NULL) {
        /* Not set up (or handed back to Python): the reference checks. */
        return PyObject_CallMethodObjArgs((PyObject *)self, str_check_resumable_slow, args[0],
                                          args[1], NULL);
    }
    PyObject *d = context_dict();
    if (d == NULL) {
        return NULL;
    }
    PyObject *running = PyDict_GetItemWithError(d, str_runner); /* borrowed */
    int same = -1;
    if (running != NULL) {
        PyObject *trio_runner = read_slot(&read_task_runner, self->task);
        if (trio_runner != NULL) {
            same = running == trio_runner;
            Py_DECREF(trio_runner);
        }
    }
    else if (!PyErr_Occurred()) {
        same = 0;
    }
    Py_DECREF(d);
    if (same < 0) {
        return NULL;
    }
    if (same) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethodObjArgs((PyObject *)self, str_check_resumable_slow, args[0],
                                      args[1], NULL);
}

static PyObject *
ts_wake(TrioSlotCore *self, PyObject *st)
{
    int synchronous = synchronous_mode();
    if (synchronous < 0) {
        return NULL;
    }
    if (synchronous && py_step != NULL) {
        /* Unless a Ctrl-C waits for the main task's next checkpoint: then
         * the Python wake lets trio's loop run the task instead. */
        PyObject *trio_runner = read_slot(&read_task_runner, self->task);
        if (trio_runner == NULL) {
            return NULL;
        }
        int ki = attr_true(trio_runner, str_ki_pending);
        Py_DECREF(trio_runner);
        if (ki < 0) {
            return NULL;
        }
        if (!ki) {
            return step(self->task, woken);
        }
    }
    return PyObject_CallMethodOneArg((PyObject *)self, str_wake_slow, st);
}

static PyObject *
ts_abort(TrioSlotCore *self, PyObject *raise_cancel)
{
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, str_try_cancel);
    if (r == NULL) {
        return NULL;
    }
    int cancelled = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (cancelled < 0) {
        return NULL;
    }
    if (cancelled && self->base.state == HS_CANCELLED && self->base.value != NULL
        && PyExceptionInstance_Check(self->base.value)) {
        /* An on_cancel callback raised KeyboardInterrupt or SystemExit: the
         * task raises it instead of Cancelled (see try_cancel). */
        return PyObject_CallMethodNoArgs((PyObject *)self, str_abort_with_stop);
    }
    return Py_NewRef(cancelled ? abort_succeeded : abort_failed);
}

/* -- the continuation: a resumption before the task has parked -- */

/* TrioContinuation's send, throw, call and _resume_unless_cancelled are
 * Python, protected from Ctrl-C (see _runner.py), because resuming a
 * parked task claims it and then steps it.  Resumed inside func, on the
 * task's own thread, before the task has parked, a resumption only stores
 * the outcome for the task to take: these compiled methods do that much
 * (the core's resume, which runs no Python code in that case), and hand
 * every other case to the Python methods, saved by setup_continuation(). */

static PyObject *py_k_send = NULL, *py_k_throw = NULL, *py_k_resume = NULL;
static PyObject *str_s;
static SlotRead read_k_slot = SLOT_READ(str_s); /* the continuation's slot (_s) */

/* The slot of k if a resumption of k now only stores its outcome (a new
 * reference); NULL without an exception otherwise. */
static PyObject *
pending_here(PyObject *k)
{
    PyObject *s = read_slot(&read_k_slot, k);
    if (s == NULL) {
        PyErr_Clear();
        return NULL;
    }
    static SeenClass seen = {NULL, 0};
    if (!is_kind_of(s, &TrioSlotCore_Type, &seen) || ((SlotCore *)s)->state != HS_PENDING) {
        Py_DECREF(s);
        return NULL;
    }
    ThreadState *st = capi->current_state();
    if (st == NULL) {
        PyErr_Clear();
        Py_DECREF(s);
        return NULL;
    }
    int here = (PyObject *)st == ((SlotCore *)s)->home;
    Py_DECREF(st);
    if (!here) {
        Py_DECREF(s);
        return NULL;
    }
    return s;
}

/* fn(k, *args, **kwargs), with the arguments of a vectorcall. */
static PyObject *
call_saved(PyObject *fn, PyObject *k, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio continuation is not set up");
        return NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *positional = PyTuple_New(nargs + 1);
    if (positional == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(positional, 0, Py_NewRef(k));
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(positional, i + 1, Py_NewRef(args[i]));
    }
    PyObject *keywords = nkw ? PyDict_New() : NULL;
    for (Py_ssize_t i = 0; keywords != NULL && i < nkw; i++) {
        if (PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            Py_CLEAR(keywords);
        }
    }
    PyObject *r = nkw && keywords == NULL ? NULL : PyObject_Call(fn, positional, keywords);
    Py_DECREF(positional);
    Py_XDECREF(keywords);
    return r;
}

/* Resume k with the outcome if that only stores it (see pending_here):
 * 1 done, 0 not (nothing done), -1 error.  No Python code runs between
 * the check and the resume. */
static int
store_if_pending(PyObject *k, int is_exc, PyObject *value)
{
    PyObject *s = pending_here(k);
    if (s == NULL) {
        return 0;
    }
    /* The core's resume, as its own continuations call it. */
    int r = capi->resume((SlotCore *)s, k, is_exc, value);
    Py_DECREF(s);
    return r < 0 ? -1 : 1;
}

/* k.send(value), and k(value) called from Python (the continuation's
 * vectorcall comes here while its class's call is tk_tp_call: see the
 * core's add_call_one). */
static PyObject *
tk_call_one(PyObject *k, PyObject *value)
{
    int done = store_if_pending(k, 0, value);
    if (done != 0) {
        return done < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (py_k_send == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio continuation is not set up");
        return NULL;
    }
    PyObject *argv[2] = {k, value};
    return PyObject_Vectorcall(py_k_send, argv, 2, NULL);
}

static PyObject *
tk_send(PyObject *k, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL && nargs == 1) {
        return tk_call_one(k, args[0]);
    }
    return call_saved(py_k_send, k, args, nargs, kwnames);
}

static PyObject *
tk_throw(PyObject *k, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL && nargs == 1 && PyExceptionInstance_Check(args[0])) {
        int done = store_if_pending(k, 1, args[0]);
        if (done != 0) {
            return done < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    return call_saved(py_k_throw, k, args, nargs, kwnames);
}

static PyObject *
tk_resume_unless_cancelled(PyObject *k, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL && nargs == 2) {
        /* Its truth first: that may run Python code. */
        int is_exc = PyObject_IsTrue(args[0]);
        if (is_exc < 0) {
            return NULL;
        }
        int done = store_if_pending(k, is_exc, args[1]);
        if (done != 0) {
            /* A pending task is never cancelled: delivered. */
            return done < 0 ? NULL : Py_NewRef(delivered_nothing);
        }
    }
    return call_saved(py_k_resume, k, args, nargs, kwnames);
}

/* k(value): the call of continuation_type itself.  Setting __call__ below
 * gives the class the generic call of a __call__ method (a look-up, a bound
 * call and a tuple every time); this is what that call does, directly. */
static PyObject *
tk_tp_call(PyObject *k, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) == 1 && (kwds == NULL || PyDict_GET_SIZE(kwds) == 0)) {
        return tk_call_one(k, PyTuple_GET_ITEM(args, 0));
    }
    if (py_k_send == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio continuation is not set up");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *positional = PyTuple_New(n + 1);
    if (positional == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(positional, 0, Py_NewRef(k));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(positional, i + 1, Py_NewRef(PyTuple_GET_ITEM(args, i)));
    }
    PyObject *r = PyObject_Call(py_k_send, positional, kwds);
    Py_DECREF(positional);
    return r;
}

static PyMethodDef tk_send_def = {
    "send", (PyCFunction)(void (*)(void))tk_send, METH_FASTCALL | METH_KEYWORDS,
    "send($self, value, /)\n--\n\nResume the task with value."};
static PyMethodDef tk_call_def = {
    "__call__", (PyCFunction)(void (*)(void))tk_send, METH_FASTCALL | METH_KEYWORDS,
    "__call__($self, value, /)\n--\n\nResume the task with value."};
static PyMethodDef tk_throw_def = {
    "throw", (PyCFunction)(void (*)(void))tk_throw, METH_FASTCALL | METH_KEYWORDS,
    "throw($self, exc, /)\n--\n\nResume the task by raising exc in it."};
static PyMethodDef tk_resume_def = {
    "_resume_unless_cancelled", (PyCFunction)(void (*)(void))tk_resume_unless_cancelled,
    METH_FASTCALL | METH_KEYWORDS, "Resume the task unless it is cancelled: (delivered, None)."};

/* Give continuation_type the compiled methods above, in front of its
 * Python ones (saved: they serve every other case). */
static PyObject *
setup_continuation(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "setup_continuation(type, send, throw, resume_unless_cancelled)");
        return NULL;
    }
    for (int i = 1; i < 4; i++) {
        if (!PyCallable_Check(args[i]) || Py_IS_TYPE(args[i], &PyMethodDescr_Type)) {
            /* A compiled method here would be these very ones: endless. */
            PyErr_SetString(PyExc_TypeError,
                            "setup_continuation takes the class's Python methods");
            return NULL;
        }
    }
    PyTypeObject *tp = (PyTypeObject *)args[0];
    /* Its slot read at its offset, if it is a plain one. */
    if (set_slot_read(&read_k_slot, args[0]) < 0) {
        return NULL;
    }
    Py_XSETREF(py_k_send, Py_NewRef(args[1]));
    Py_XSETREF(py_k_throw, Py_NewRef(args[2]));
    Py_XSETREF(py_k_resume, Py_NewRef(args[3]));
    PyMethodDef *defs[4] = {&tk_send_def, &tk_call_def, &tk_throw_def, &tk_resume_def};
    for (int i = 0; i < 4; i++) {
        PyObject *descr = PyDescr_NewMethod(tp, defs[i]);
        if (descr == NULL) {
            return NULL;
        }
        int r = PyObject_SetAttrString((PyObject *)tp, defs[i]->ml_name, descr);
        Py_DECREF(descr);
        if (r < 0) {
            return NULL;
        }
    }
    /* A call of an instance goes straight to tk_tp_call; setting __call__
     * again (as _setup_compiled does to hand back to Python) resets it. */
    tp->tp_call = tk_tp_call;
    if (capi->add_call_one(tk_tp_call, tk_call_one) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- the wait: the slot is what the task's shift runs (through am_send) -- */

static PySendResult
ts_am_send(TrioSlotCore *self, PyObject *arg, PyObject **result)
{
    switch (self->phase) {
    case PH_FRESH:
        if (self->trap == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "dneio: a trio slot awaited without its wait");
            *result = NULL;
            return PYGEN_ERROR;
        }
        self->phase = PH_WAITING;
        *result = Py_NewRef(self->trap);
        return PYGEN_NEXT;
    case PH_WAITING:
        self->phase = PH_OVER;
        Py_CLEAR(self->trap);
        if (arg == woken) {
            *result = capi->outcome(&self->base);
        }
        else {
            /* trio itself woke the task: a cancellation (or KeyboardInterrupt). */
            *result = PyObject_CallMethodNoArgs(arg, str_unwrap);
        }
        return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
    default:
        PyErr_SetString(PyExc_RuntimeError, "dneio: this trio wait is over");
        *result = NULL;
        return PYGEN_ERROR;
    }
}

/* An exception thrown into the wait goes on up, as from the yield of the
 * reference's _wait. */
static PyObject *
ts_throw(TrioSlotCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    self->phase = PH_OVER;
    Py_CLEAR(self->trap);
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw(typ[, val[, tb]])");
        return NULL;
    }
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : Py_None;
    PyObject *tb = nargs > 2 ? args[2] : Py_None;
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        exc = Py_NewRef(typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        if (PyExceptionInstance_Check(val)) {
            exc = Py_NewRef(val);
        }
        else {
            exc = val == Py_None ? PyObject_CallNoArgs(typ) : PyObject_CallOneArg(typ, val);
            if (exc == NULL) {
                return NULL;
            }
            if (!PyExceptionInstance_Check(exc)) {
                Py_DECREF(exc);
                PyErr_SetString(PyExc_TypeError, "throw(): the class made no exception");
                return NULL;
            }
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError, "throw() takes an exception");
        return NULL;
    }
    if (tb != Py_None && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *
ts_close(TrioSlotCore *self, PyObject *unused)
{
    self->phase = PH_OVER;
    Py_CLEAR(self->trap);
    Py_RETURN_NONE;
}

static PyMemberDef ts_members[] = {
    {"task", T_OBJECT_EX, offsetof(TrioSlotCore, task), READONLY, "the parked trio task"},
    {"token", T_OBJECT_EX, offsetof(TrioSlotCore, token), READONLY, "its run's TrioToken"},
    {NULL}
};

static PyMethodDef ts_methods[] = {
    {"check_resumable", (PyCFunction)(void (*)(void))ts_check_resumable, METH_FASTCALL,
     "Raise a clear error if the task cannot be resumed (here: on this thread)."},
    {"_wake", (PyCFunction)ts_wake, METH_O, "Run the claimed task (synchronously or not)."},
    {"abort", (PyCFunction)ts_abort, METH_O, "trio's abort callback for the wait."},
    {"throw", (PyCFunction)(void (*)(void))ts_throw, METH_FASTCALL,
     "An exception thrown into the wait."},
    {"close", (PyCFunction)ts_close, METH_NOARGS, "The task's coroutine was closed here."},
    {NULL}
};

/* Only am_send: the slot must not look like a coroutine or an iterator. */
static PyAsyncMethods ts_as_async = {
    .am_send = (sendfunc)ts_am_send,
};

static PyTypeObject TrioSlotCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._hosts._trio._trio_c.TrioSlotCore",
    .tp_doc = "TrioSlotCore(home, task, token): the compiled part of a trio task's parking slot.",
    .tp_basicsize = sizeof(TrioSlotCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = ts_new,
    .tp_init = (initproc)ts_init,
    .tp_traverse = (traverseproc)ts_traverse,
    .tp_clear = (inquiry)ts_clear,
    .tp_dealloc = (destructor)ts_dealloc,
    .tp_members = ts_members,
    .tp_methods = ts_methods,
    .tp_as_async = &ts_as_async,
};

/* -- the shift -- */

/* WaitTaskRescheduled(slot.abort): without calling the class where
 * fast_trap says its instances are plain objects with that one field. */
static PyObject *
make_trap(TrioSlotCore *slot)
{
    PyObject *abort = PyObject_GetAttr((PyObject *)slot, str_abort);
    if (abort == NULL) {
        return NULL;
    }
    PyObject *trap;
    if (fast_trap) {
        /* object.__new__ (checked), which also sets up the instance dict. */
        PyTypeObject *tp = (PyTypeObject *)wait_type;
        trap = tp->tp_new(tp, empty_tuple, NULL);
        if (trap != NULL && PyObject_GenericSetAttr(trap, str_trap_abort, abort) < 0) {
            Py_CLEAR(trap);
        }
    }
    else {
        trap = PyObject_CallOneArg(wait_type, abort);
    }
    Py_DECREF(abort);
    return trap;
}

/* shift(func) in the trio task running here: None if none runs, (value,)
 * if func resumed the task at once, else what the task's shift runs. */
/* shift_if_in_task(func), as a HostShiftFn (the core calls it directly):
 * 0 outside a trio task, 1 with *out the wait to run, 2 with *out the value
 * the task was resumed with before it had to suspend, or -1. */
static int
shift_here(PyObject *func, ThreadState *given, PyObject **out)
{
    if (slot_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio core is not set up");
        return -1;
    }
    PyObject *d = context_dict_of(given);
    if (d == NULL) {
        return -1;
    }
    PyObject *task = context_task(d);
    if (task == NULL || task == Py_None) {
        Py_DECREF(d);
        return task == NULL && PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(task);
    Py_DECREF(d);
    PyObject *token = NULL, *result = NULL;
    int status = -1;
    TrioSlotCore *slot = NULL;
    ThreadState *st = NULL;
    PyObject *hosting = read_slot(&read_hosting_trio, hosting_flag);
    if (hosting == NULL) {
        goto done;
    }
    Py_DECREF(hosting);
    if (hosting == Py_None) {
        PyObject *r = PyObject_CallNoArgs(start_hosting);
        if (r == NULL) {
            goto done;
        }
        Py_DECREF(r);
    }
    PyObject *trio_runner = read_slot(&read_task_runner, task);
    if (trio_runner == NULL) {
        goto done;
    }
    token = read_slot(&read_trio_token, trio_runner);
    Py_DECREF(trio_runner);
    if (token == Py_None) {
        /* trio makes a run's token on first request: ask for it (before
         * func runs, so nothing is handed out yet). */
        Py_SETREF(token, PyObject_CallNoArgs(current_trio_token));
    }
    if (token == NULL
        || (st = given != NULL ? (ThreadState *)Py_NewRef(given) : capi->current_state()) == NULL) {
        goto done;
    }
    PyTypeObject *tp = (PyTypeObject *)slot_type;
    slot = (TrioSlotCore *)tp->tp_alloc(tp, 0);
    if (slot == NULL) {
        goto done;
    }
    ts_init_new(slot, (PyObject *)st, task, token);
    int synchronous = synchronous_mode();
    if (synchronous < 0) {
        goto done;
    }
    if (synchronous && !fast_trap) {
        /* Calling the class runs Python code: the wait is made before func
         * runs, so that from handing out the continuation to yielding the
         * wait no Python code runs. */
        if ((slot->trap = make_trap(slot)) == NULL) {
            goto done;
        }
    }
    int wait = capi->must_wait(&slot->base, func, continuation_type, synchronous);
    if (wait < 0) {
        goto done;
    }
    if (!wait) {
        if ((result = capi->outcome(&slot->base)) != NULL) {
            status = 2;
        }
    }
    else if (synchronous) {
        if (slot->trap == NULL && (slot->trap = make_trap(slot)) == NULL) {
            /* Out of memory, with the continuation handed out: the task is
             * cancelled in effect (a resumption finds it claimed). */
            PyObject *exc = take_exception();
            PyObject *r = PyObject_CallMethodNoArgs((PyObject *)slot, str_try_cancel);
            Py_XDECREF(r);
            PyErr_Clear();
            give_exception(exc);
            goto done;
        }
        result = Py_NewRef(slot);
        status = 1;
    }
    else {
        /* The deferred mode waits in Python. */
        result = PyObject_CallMethodOneArg(runner, str_wait, (PyObject *)slot);
        status = result == NULL ? -1 : 1;
    }
done:
    Py_XDECREF(slot);
    Py_XDECREF((PyObject *)st);
    Py_XDECREF(token);
    Py_DECREF(task);
    if (status > 0) {
        *out = result;
    }
    return status;
}

static PyObject *
shift_if_in_task(PyObject *module, PyObject *func)
{
    PyObject *result = NULL;
    int status = shift_here(func, NULL, &result);
    if (status <= 0) {
        return status < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (status == 1) {
        return result;
    }
    PyObject *done = PyTuple_Pack(1, result);
    Py_DECREF(result);
    return done;
}

/* ---------------------------------------------- hosting native coroutines */

/* The compiled part of NativeHosting (which derives from this type, and
 * whose Python methods are the reference): entering a native coroutine's
 * host from a trio task, when the coroutine already has a live host of the
 * task's run, and leaving it.  Any other case goes to the Python methods
 * (_host_for, _release, _watch), which run protected from Ctrl-C. */

static PyObject *str_host_for;
static PyObject *str_cr_frame, *str_release, *str_watch, *str_get;
static PyObject *leave_fn = NULL; /* this module's leave(token) */

/* host.run.runner is trio_runner and not host.ended: 1, 0, or -1. */
static int
host_is_live(PyObject *host, PyObject *trio_runner)
{
    PyObject *run = read_slot(&read_host_run, host);
    if (run == NULL) {
        return -1;
    }
    int same = slot_is(&read_run_runner, run, trio_runner);
    Py_DECREF(run);
    if (same != 1) {
        return same;
    }
    return slot_is(&read_host_ended, host, Py_False);
}

/* NativeHosting.enter_in_task(coro): the token leave() takes, or None. */
static PyObject *
hc_enter_in_task(PyObject *self, PyObject *coro)
{
    if (run_context_dict.local == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the trio core is not set up");
        return NULL;
    }
    PyObject *d = context_dict();
    if (d == NULL) {
        return NULL;
    }
    PyObject *task = context_task(d);
    if (task == NULL || task == Py_None) {
        Py_DECREF(d);
        return task == NULL && PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    Py_INCREF(task);
    PyObject *trio_runner = NULL, *records = NULL, *key = NULL, *host = NULL, *host_task = NULL;
    PyObject *token = NULL;
    trio_runner = read_slot(&read_task_runner, task);
    records = trio_runner == NULL ? NULL : read_slot(&read_records, self);
    key = records == NULL ? NULL : id_of(coro);
    if (key == NULL) {
        goto done;
    }
    if (!PyDict_CheckExact(records)) {
        PyErr_SetString(PyExc_TypeError, "dneio: the hosting's records are not a dict");
        goto done;
    }
    host = PyDict_GetItemWithError(records, key);
    if (host == NULL && PyErr_Occurred()) {
        goto done;
    }
    Py_XINCREF(host);
    int live = host == NULL ? 0 : host_is_live(host, trio_runner);
    if (live < 0) {
        goto done;
    }
    if (!live) {
        /* A free host, or a new one: Python's. */
        Py_XSETREF(host, PyObject_CallMethodObjArgs(self, str_host_for, coro, trio_runner, NULL));
        if (host == NULL || host == Py_None) {
            token = host;
            host = NULL;
            goto done;
        }
    }
    host_task = read_slot(&read_host_task, host);
    if (host_task == NULL) {
        goto done;
    }
    token = PyTuple_Pack(5, leave_fn, task, host, coro, self);
    if (token != NULL && PyDict_SetItem(d, str_task, host_task) < 0) {
        Py_CLEAR(token);
    }
done:
    Py_XDECREF(host_task);
    Py_XDECREF(host);
    Py_XDECREF(key);
    Py_XDECREF(records);
    Py_XDECREF(trio_runner);
    Py_DECREF(task);
    Py_DECREF(d);
    return token;
}

/* HostRecords._after_step: release the host of a finished coroutine, or
 * watch a suspended one (both rare, and Python's). */
static int
after_step(PyObject *hosting, PyObject *coro, PyObject *host)
{
    PyObject *frame = coro_frame(coro, str_cr_frame);
    if (frame == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear(); /* not a coroutine: never counted as finished */
    }
    else {
        Py_DECREF(frame);
        if (frame == Py_None) {
            PyObject *r = PyObject_CallMethodObjArgs(hosting, str_release, coro, host, NULL);
            Py_XDECREF(r);
            return r == NULL ? -1 : 0;
        }
    }
    int unwatched = slot_is(&read_host_ref, host, Py_None);
    if (unwatched <= 0) {
        return unwatched;
    }
    PyObject *records = read_slot(&read_records, hosting);
    PyObject *key = records == NULL ? NULL : id_of(coro);
    PyObject *r = key == NULL ? NULL : PyObject_CallMethodOneArg(records, str_get, key);
    Py_XDECREF(key);
    Py_XDECREF(records);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    if (r != host) {
        return 0;
    }
    r = PyObject_CallMethodObjArgs(hosting, str_watch, coro, host, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Undo enter_in_task, with its token: the resumer's task current again. */
static PyObject *
hosting_leave(PyObject *module, PyObject *token)
{
    if (!PyTuple_CheckExact(token) || PyTuple_GET_SIZE(token) != 5) {
        PyErr_SetString(PyExc_TypeError, "leave() takes the token of enter_in_task()");
        return NULL;
    }
    PyObject *d = context_dict();
    if (d == NULL) {
        return NULL;
    }
    int r = PyDict_SetItem(d, str_task, PyTuple_GET_ITEM(token, 1));
    Py_DECREF(d);
    if (r < 0 || after_step(PyTuple_GET_ITEM(token, 4), PyTuple_GET_ITEM(token, 3),
                            PyTuple_GET_ITEM(token, 2)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef hc_methods[] = {
    {"enter_in_task", (PyCFunction)hc_enter_in_task, METH_O,
     "Make coro's host current in place of the running trio task; the token, or None."},
    {NULL}
};

static PyTypeObject HostingCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._hosts._trio._trio_c.HostingCore",
    .tp_doc = "The compiled part of the trio runner's hosting of native coroutines.",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_methods = hc_methods,
};

/* The driver's entry hook while only trio hosts native code (the asyncio
 * runner's compiled hook, once loaded, stands in for both): it stands in for
 * _entry.HOSTING, whose enter and leave it runs for a trio task, and calls
 * for everything else. */

static PyObject *str_enter, *str_leave, *str_enter_in_task;

typedef struct {
    PyObject_HEAD
    PyObject *hosting; /* _entry.HOSTING */
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

static PyObject *
hook_enter_impl(PyObject *hook, PyObject *st, PyObject *coro)
{
    Hook *self = (Hook *)hook;
    PyObject *trio = read_slot(&read_hosting_trio, self->hosting);
    if (trio == NULL) {
        return NULL;
    }
    if (trio != Py_None) {
        /* What HOSTING.enter asks first. */
        /* HostingCore's own enter_in_task, called without a look-up
         * where the look-up would find it. */
        PyObject *token =
            PyObject_TypeCheck(trio, &HostingCore_Type)
                && is_method_of(class_attribute_for_instances(Py_TYPE(trio), str_enter_in_task),
                                hc_enter_in_task)
            ? hc_enter_in_task(trio, coro)
            : PyObject_CallMethodOneArg(trio, str_enter_in_task, coro);
        Py_DECREF(trio);
        if (token != Py_None) {
            return token;
        }
        Py_DECREF(token);
    }
    else {
        Py_DECREF(trio);
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

static PyObject *
hook_leave(PyObject *hook, PyObject *token)
{
    Hook *self = (Hook *)hook;
    if (PyTuple_CheckExact(token) && PyTuple_GET_SIZE(token) == 5
        && PyTuple_GET_ITEM(token, 0) == leave_fn) {
        return hosting_leave(NULL, token);
    }
    PyObject *call[2] = {self->hosting, token};
    return PyObject_VectorcallMethod(str_leave, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyMethodDef hook_methods[] = {
    {"enter", (PyCFunction)(void (*)(void))hook_enter, METH_FASTCALL,
     "Make coro's host task current; returns what leave needs, or None."},
    {"leave", hook_leave, METH_O, "Undo enter, with its token."},
    {NULL}
};

static PyTypeObject Hook_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._hosts._trio._trio_c.Hook",
    .tp_doc = "Hook(hosting): the hosting's entry hook, compiled for trio.",
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
        "run_context", "runner", "hosting", "start_hosting", "slot_type",
        "continuation_type", "wait_type", "woken", "step", "after_send",
        "deliver_pending_cancel", "abort_succeeded", "abort_failed", "after_task_step",
        "current_trio_token", "fast_trap", NULL};
    PyObject *a[15];
    int fast = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOOOOOOp:setup", kwlist, &a[0], &a[1],
                                     &a[2], &a[3], &a[4], &a[5], &a[6], &a[7], &a[8], &a[9],
                                     &a[10], &a[11], &a[12], &a[13], &a[14], &fast)) {
        return NULL;
    }
    if (!PyType_Check(a[4]) || !PyType_IsSubtype((PyTypeObject *)a[4], &TrioSlotCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "slot_type must be a subclass of TrioSlotCore");
        return NULL;
    }
    if (!PyType_Check(a[6])) {
        PyErr_SetString(PyExc_TypeError, "wait_type must be a class");
        return NULL;
    }
    /* A Python subclass does not inherit am_send, through which the task's
     * shift runs the slot (PyIter_Send): give it that of the compiled slot. */
    PyTypeObject *tp = (PyTypeObject *)a[4];
    if (tp->tp_as_async == NULL) {
        PyErr_SetString(PyExc_TypeError, "slot_type has no async methods to extend");
        return NULL;
    }
    tp->tp_as_async->am_send = (sendfunc)ts_am_send;
    PyType_Modified(tp);
    if (local_dict_setup(&run_context_dict, a[0]) < 0) {
        return NULL;
    }
    Py_XSETREF(runner, Py_NewRef(a[1]));
    Py_XSETREF(hosting_flag, Py_NewRef(a[2]));
    Py_XSETREF(start_hosting, Py_NewRef(a[3]));
    Py_XSETREF(slot_type, Py_NewRef(a[4]));
    Py_XSETREF(continuation_type, Py_NewRef(a[5]));
    Py_XSETREF(wait_type, Py_NewRef(a[6]));
    Py_XSETREF(woken, Py_NewRef(a[7]));
    Py_XSETREF(py_step, Py_NewRef(a[8]));
    Py_XSETREF(py_after_send, Py_NewRef(a[9]));
    Py_XSETREF(py_deliver_cancel, Py_NewRef(a[10]));
    Py_XSETREF(abort_succeeded, Py_NewRef(a[11]));
    Py_XSETREF(abort_failed, Py_NewRef(a[12]));
    Py_XSETREF(py_after_task_step, Py_NewRef(a[13]));
    Py_XSETREF(current_trio_token, Py_NewRef(a[14]));
    fast_trap = fast;
    Py_RETURN_NONE;
}

/* Hand everything back to the Python reference (setup() undoes it). */
static PyObject *
disable(PyObject *module, PyObject *unused)
{
    Py_CLEAR(py_step);
    Py_CLEAR(slot_type);
    slot_reads_clear(all_reads, N_READS);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup_continuation", (PyCFunction)(void (*)(void))setup_continuation, METH_FASTCALL,
     "Put the compiled send, throw, call and _resume_unless_cancelled in front of a "
     "continuation class's Python ones."},
    {"disable", disable, METH_NOARGS,
     "Let the Python methods serve: the slot's wake-up and checks go to them."},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "Register what the compiled trio shift needs from the runner."},
    {"setup_slot_reads", (PyCFunction)(void (*)(void))setup_slot_reads, METH_FASTCALL,
     "Read trio's Task._runner and Runner.trio_token, and the hosting's attributes, at "
     "their slots' offsets where they are plain slots of these classes."},
    {"slot_reads", slot_reads, METH_NOARGS,
     "Which attribute reads go by offset now, as 'Class.name'."},
    {"shift_if_in_task", shift_if_in_task, METH_O,
     "The shift of the trio task running here; None if there is none."},
    {"leave", hosting_leave, METH_O,
     "Undo HostingCore.enter_in_task, with its token."},
    {"step", (PyCFunction)(void (*)(void))step_py, METH_FASTCALL,
     "step(task, send): run one step of the parked task now (see _internals.step)."},
    {NULL}
};

static struct PyModuleDef trio_c_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dneio._hosts._trio._trio_c",
    .m_doc = "The compiled part of dneio's trio runner.",
    .m_size = -1,
    .m_methods = module_methods,
};

#define INTERN(var, text)                                                          \
    do {                                                                           \
        if ((var = PyUnicode_InternFromString(text)) == NULL) {                    \
            return NULL;                                                           \
        }                                                                          \
    } while (0)

PyMODINIT_FUNC
PyInit__trio_c(void)
{
    capi = (DneioCAPI *)PyCapsule_Import(DNEIO_CAPI_NAME, 0);
    if (capi == NULL) {
        return NULL;
    }
    if (capi->version != DNEIO_CAPI_VERSION) {
        PyErr_SetString(PyExc_ImportError, "dneio: the compiled core is of another version");
        return NULL;
    }
    TrioSlotCore_Type.tp_base = capi->slot_type;
    if (PyType_Ready(&TrioSlotCore_Type) < 0 || PyType_Ready(&HostingCore_Type) < 0
        || PyType_Ready(&Hook_Type) < 0
        || capi->add_hook_type(&Hook_Type, hook_enter_impl, hook_leave) < 0) {
        return NULL;
    }
    INTERN(str_dict, "__dict__");
    INTERN(str_task, "task");
    INTERN(str_runner, "runner");
    INTERN(str_task_runner, "_runner");
    INTERN(str_trio, "trio");
    INTERN(str_synchronous, "synchronous");
    INTERN(str_trio_token, "trio_token");
    INTERN(str_abort, "abort");
    INTERN(str_abort_func, "_abort_func");
    INTERN(str_trap_abort, "abort_func");
    INTERN(str_custom_sleep_data, "custom_sleep_data");
    INTERN(str_coro, "coro");
    INTERN(str_context, "context");
    INTERN(str_instruments, "instruments");
    INTERN(str_data, "data");
    INTERN(str_before_task_step, "before_task_step");
    INTERN(str_after_task_step, "after_task_step");
    INTERN(str_schedule_points, "_schedule_points");
    INTERN(str_cancel_points, "_cancel_points");
    INTERN(str_ki_pending, "ki_pending");
    INTERN(str_main_task, "main_task");
    INTERN(str_cancel_status, "_cancel_status");
    INTERN(str_effectively_cancelled, "effectively_cancelled");
    INTERN(str_unwrap, "unwrap");
    INTERN(str_wait, "_wait");
    INTERN(str_check_resumable_slow, "_check_resumable_slow");
    INTERN(str_wake_slow, "_wake_slow");
    INTERN(str_try_cancel, "try_cancel");
    INTERN(str_abort_with_stop, "abort_with_stop");
    INTERN(str_asyncio, "asyncio");
    INTERN(str_records, "records");
    INTERN(str_s, "_s");
    INTERN(str_enter, "enter");
    INTERN(str_leave, "leave");
    INTERN(str_enter_in_task, "enter_in_task");
    INTERN(str_run, "run");
    INTERN(str_ended, "ended");
    INTERN(str_host_for, "_host_for");
    INTERN(str_ref, "ref");
    INTERN(str_cr_frame, "cr_frame");
    INTERN(str_release, "_release");
    INTERN(str_watch, "_watch");
    INTERN(str_get, "get");
    if ((empty_tuple = PyTuple_New(0)) == NULL) {
        return NULL;
    }
    if ((one = PyLong_FromLong(1)) == NULL) {
        return NULL;
    }
    if ((delivered_nothing = PyTuple_Pack(2, Py_True, Py_None)) == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&trio_c_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "TrioSlotCore", (PyObject *)&TrioSlotCore_Type) < 0
        || PyModule_AddObjectRef(m, "HostingCore", (PyObject *)&HostingCore_Type) < 0
        || PyModule_AddObjectRef(m, "Hook", (PyObject *)&Hook_Type) < 0
        || (leave_fn = PyObject_GetAttrString(m, "leave")) == NULL) {
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
