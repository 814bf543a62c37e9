/* What the compiled core shares with compiled host modules (a host's own
 * extension, such as dneio._hosts._asyncio._asyncio_c): the layout of the
 * per-thread state and of a host slot, and a few functions, handed over in
 * a capsule.  The engine itself names no host. */

#ifndef DNEIO_DRIVER_C_API_H
#define DNEIO_DRIVER_C_API_H

#include <Python.h>

/* The per-thread state (the fields of _run_context.ThreadState). */
typedef struct {
    PyObject_HEAD
    PyObject *driving;
    PyObject *queue;
    PyObject *entry_host;
    Py_ssize_t depth;
    Py_ssize_t hold;
    char pump_pending;
} ThreadState;

/* What a host task parked in shift shares with its continuation. */
typedef struct {
    PyObject_HEAD
    PyObject *home;    /* the ThreadState of the task's thread */
    PyObject *value;   /* the outcome: a value, or (exception, traceback) */
    PyObject *k_ref;   /* None, or a weak reference to the continuation */
    int state;
    char is_exc;
    char shielded;
} SlotCore;

/* The states of a slot (_hosts/_parking.py names them). */
enum {
    HS_PENDING = 0,   /* func is still running in the task */
    HS_EARLY = 1,     /* resumed while func was running */
    HS_PARKED = 2,    /* the task is suspended, waiting */
    HS_RESUMED = 3,   /* claimed by a resumption */
    HS_CANCELLED = 4, /* the task was cancelled while parked */
    HS_SPENT = 5,     /* func raised before resuming */
    HS_DROPPED = 6,   /* the handle was dropped before func returned */
};

/* A compiled entry hook's enter and leave: what its methods of those names
 * do, called by the core without looking the methods up.  enter(hook, st,
 * coro) returns the token for leave (a new reference), None, or NULL with
 * an exception set; leave(hook, token) returns a new reference or NULL. */
typedef PyObject *(*HookEnterFn)(PyObject *hook, PyObject *st, PyObject *coro);
typedef PyObject *(*HookLeaveFn)(PyObject *hook, PyObject *token);

/* A host's shift_if_in_task(func), compiled: 0 where none of its tasks is
 * running here (nothing done); 1 with *result the body of the shift to run;
 * 2 with *result the value func resumed the task with before it had to
 * suspend; -1 with an exception set.  (*result is a new reference.)  The
 * Python function returns None, the body, or (value,).  ``st`` is this
 * thread's state (borrowed), or NULL for the function to find it. */
typedef int (*HostShiftFn)(PyObject *func, ThreadState *st, PyObject **result);

/* What an awaitable of a compiled type that passes what is sent into it on
 * to an awaitable of its own awaits now (borrowed), or NULL (none). */
typedef PyObject *(*InnerFn)(PyObject *awaitable);

/* A continuation called with one positional argument: k(value). */
typedef PyObject *(*CallOneFn)(PyObject *k, PyObject *value);

typedef struct {
    int version;
    PyTypeObject *slot_type;
    PyTypeObject *thread_state_type;
    /* This thread's state (a new reference), or NULL with an exception set. */
    ThreadState *(*current_state)(void);
    /* SlotCore.must_wait: 1 (suspend), 0 (go on) or -1 (error). */
    int (*must_wait)(SlotCore *slot, PyObject *func, PyObject *make_continuation,
                     int synchronous);
    /* SlotCore.outcome: the value (new reference), or NULL with the exception set. */
    PyObject *(*outcome)(SlotCore *slot);
    /* Is k a native continuation whose coroutine was not closed?  1 or 0. */
    int (*is_live_native)(PyObject *k);
    /* A native continuation's send(value): the answer (new reference), or NULL. */
    PyObject *(*native_send)(PyObject *k, PyObject *value);
    /* Make the objects of ``type`` compiled entry hooks: while one is the
     * entry hook, the core calls enter and leave directly.  ``type`` must
     * not be subclassable, so that its methods are these.  0, or -1 with an
     * exception set. */
    int (*add_hook_type)(PyTypeObject *type, HookEnterFn enter, HookLeaveFn leave);
    /* SlotCore.resume(k, is_exc, value) of the core, whatever a subclass
     * defines (as the core's own continuations call it): 1 delivered, 0 the
     * task was cancelled (a no-op), -1 with an exception set. */
    int (*resume)(SlotCore *slot, PyObject *k, int is_exc, PyObject *value);
    /* Where the registry lists the object ``shift_if_in_task`` (a host's
     * compiled function), the core calls ``fn`` instead, which does what
     * calling the object does.  0, or -1 with an exception set. */
    int (*add_host_shift)(PyObject *shift_if_in_task, HostShiftFn fn);
    /* Awaitables of ``type`` pass every value sent into them on, as it is,
     * to what ``inner`` gives (as ``await`` does): a resumption with a value
     * may then go to the shift at the end of the chain (see fill_park).
     * ``type`` must not be subclassable.  0, or -1 with an exception set. */
    int (*add_passing_type)(PyTypeObject *type, InnerFn inner);
    /* Finish an iterator's __next__ with ``value`` (stolen): NULL with
     * StopIteration(value) set, or with no exception set for None, as the
     * core's shift does (it keeps a spare StopIteration). */
    PyObject *(*stop_with)(PyObject *value);
    /* A host continuation whose class has ``call`` as its tp_call is called
     * from Python with one positional argument as ``one(k, value)``, with
     * no argument tuple.  0, or -1 with an exception set. */
    int (*add_call_one)(ternaryfunc call, CallOneFn one);
    /* What a compiled slot's dealloc ends with instead of tp_free: the
     * object (untracked, fields cleared) is freed, or kept for reuse where
     * its class takes instances from the core's free lists. */
    void (*free_instance)(PyObject *op);
} DneioCAPI;

#define DNEIO_CAPI_VERSION 5
#define DNEIO_CAPI_NAME "dneio._core._driver_c._C_API"

#endif
