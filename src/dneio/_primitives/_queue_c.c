/* The compiled fast path of RequestQueue: a request and a server's wait,
 * and the fields of the line of waiters (Waiters) they work on.
 *
 * _request_queue.py and _waiters.py stay the reference.  Here are only the two steps every
 * request takes, for the common case: a request that finds a native server
 * waiting hands itself over, and a server that finds no request waiting
 * lines up.  Everything else (a closed queue, a request already waiting for
 * the server, a waiter that is not a live native continuation, anything
 * malformed) goes to the Python methods, which run it from the start; the
 * fast path changes nothing before it decides.  The native continuation is
 * reached through the capsule of the compiled core.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_driver_c_api.h"
#include "_fast_reads.h"

static DneioCAPI *capi = NULL;

/* Registered by setup(). */
static PyObject *py_request_cb = NULL;  /* RequestQueue.request_cb of the reference */
static PyObject *py_get_one_cb = NULL;  /* RequestQueue.get_one_cb of the reference */
static PyObject *shift = NULL;          /* dneio.shift */
static PyObject *partial = NULL;        /* functools.partial */
static PyObject *queue_type = NULL;     /* RequestQueue itself */
static PyObject *compiled_request_cb = NULL; /* RequestQueueCore.request_cb */
static PyObject *str_request_cb = NULL;

static PyObject *str_sweep = NULL;
static PyObject *str_appendleft = NULL;


/* ------------------------------------------------------ the line of waiters */

static PyObject *deque_type = NULL;     /* collections.deque */
static PyObject *deque_append = NULL;   /* deque.append, unbound */
static PyObject *deque_popleft = NULL;  /* deque.popleft, unbound */

/* Waiters' fields, held in C; its methods are Python's (_waiters.py). */
typedef struct {
    PyObject_HEAD
    PyObject *line;        /* a deque of (k, payload) */
    Py_ssize_t dead;       /* cancelled entries counted, not yet dropped */
    Py_ssize_t sweep_at;   /* the length at which natives are next swept */
} WaitersCore;

static PyTypeObject WaitersCore_Type;

static int
wc_traverse(WaitersCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->line);
    return 0;
}

static int
wc_clear(WaitersCore *self)
{
    Py_CLEAR(self->line);
    return 0;
}

static void
wc_dealloc(WaitersCore *self)
{
    PyObject_GC_UnTrack(self);
    wc_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef wc_members[] = {
    {"_line", T_OBJECT_EX, offsetof(WaitersCore, line), 0, NULL},
    {"_dead", T_PYSSIZET, offsetof(WaitersCore, dead), 0, NULL},
    {"_sweep_at", T_PYSSIZET, offsetof(WaitersCore, sweep_at), 0, NULL},
    {NULL}
};

static PyTypeObject WaitersCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._primitives._queue_c.WaitersCore",
    .tp_doc = "The fields of Waiters, held where compiled code reads them.",
    .tp_basicsize = sizeof(WaitersCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)wc_traverse,
    .tp_clear = (inquiry)wc_clear,
    .tp_dealloc = (destructor)wc_dealloc,
    .tp_members = wc_members,
};

/* The line of w if w is a compiled Waiters holding a deque (borrowed), else NULL. */
static inline PyObject *
line_of(PyObject *w)
{
    static SeenClass seen = {NULL, 0};
    if (!is_kind_of(w, &WaitersCore_Type, &seen)) {
        return NULL;
    }
    PyObject *line = ((WaitersCore *)w)->line;
    return line != NULL && (PyObject *)Py_TYPE(line) == deque_type ? line : NULL;
}

/* ------------------------------------------------------------ the queue */

typedef struct {
    PyObject_HEAD
    PyObject *closed;     /* None, or the closing exception */
    PyObject *closed_tb;  /* its traceback when it was given */
    PyObject *receivers;  /* Waiters of servers: payload True for get_many */
    PyObject *requests;   /* Waiters of requesters: payload the request */
} QueueCore;

static int
qc_traverse(QueueCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->closed);
    Py_VISIT(self->closed_tb);
    Py_VISIT(self->receivers);
    Py_VISIT(self->requests);
    return 0;
}

static int
qc_clear(QueueCore *self)
{
    Py_CLEAR(self->closed);
    Py_CLEAR(self->closed_tb);
    Py_CLEAR(self->receivers);
    Py_CLEAR(self->requests);
    return 0;
}

static void
qc_dealloc(QueueCore *self)
{
    PyObject_GC_UnTrack(self);
    qc_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Native k goes at the back of waiters' line, as Waiters.push does it:
 * 0 done, -1 error.  (waiters is a compiled Waiters with a deque.) */
static int
push_native(PyObject *waiters, PyObject *k, PyObject *payload)
{
    WaitersCore *w = (WaitersCore *)waiters;
    PyObject *line = Py_NewRef(w->line);
    PyObject *entry = PyTuple_Pack(2, k, payload);
    if (entry == NULL) {
        Py_DECREF(line);
        return -1;
    }
    PyObject *args[2] = {line, entry};
    PyObject *r = PyObject_Vectorcall(deque_append, args, 2, NULL);
    Py_DECREF(entry);
    if (r == NULL) {
        Py_DECREF(line);
        return -1;
    }
    Py_DECREF(r);
    /* Native continuations are not watched one by one: the line is swept
     * of closed ones whenever it has doubled since the last sweep. */
    Py_ssize_t n = PyObject_Length(line);
    Py_DECREF(line);
    if (n < 0) {
        return -1;
    }
    if (n > w->sweep_at) {
        r = PyObject_CallMethodNoArgs(waiters, str_sweep);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

/* Take the front entry of waiters' line if it is (k, payload) with k a live
 * native continuation: 1 (with *k and *payload, new references); 0 if the
 * line is empty; 2 if its front is anything else (left in place); -1. */
static int
take_native(PyObject *waiters, PyObject **k, PyObject **payload)
{
    PyObject *line = ((WaitersCore *)waiters)->line;
    Py_ssize_t n = PyObject_Length(line);
    if (n <= 0) {
        return n < 0 ? -1 : 0;
    }
    PyObject *entry = PySequence_GetItem(line, 0);
    if (entry == NULL) {
        return -1;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2
        || !capi->is_live_native(PyTuple_GET_ITEM(entry, 0))) {
        Py_DECREF(entry);
        return 2;
    }
    PyObject *r = PyObject_Vectorcall(deque_popleft, &line, 1, NULL);
    if (r == NULL) {
        Py_DECREF(entry);
        return -1;
    }
    Py_DECREF(r);
    *k = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
    *payload = Py_NewRef(PyTuple_GET_ITEM(entry, 1));
    Py_DECREF(entry);
    return 1;
}

/* Bind positional and keyword arguments to the n parameters named in names
 * (all required), as a Python def would: 0, or -1 with TypeError. */
static int
bind(const char *fn, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
     const char *const *names, Py_ssize_t n, PyObject **out)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, n, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        Py_ssize_t i = 0;
        while (i < n && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) {
            i++;
        }
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fn, key);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fn,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + j];
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fn, names[i]);
            return -1;
        }
    }
    return 0;
}

static int
ready(QueueCore *self)
{
    if (capi == NULL || py_request_cb == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the compiled RequestQueue is not set up");
        return -1;
    }
    /* Only an open queue whose two lines are compiled Waiters holding deques. */
    return self->closed == Py_None && self->receivers != NULL && self->requests != NULL
           && line_of(self->receivers) != NULL && line_of(self->requests) != NULL;
}

static PyObject *reply_to_impl(PyObject *k);

/* What a server taken off the line receives for request val of k: (val,
 * reply), in a list for get_many; the reply is k itself for a native
 * requester, else the guard the reference wraps it in.  NULL on error. */
static PyObject *
server_item(PyObject *val, PyObject *k, int native, PyObject *many)
{
    PyObject *reply = native ? Py_NewRef(k) : reply_to_impl(k);
    if (reply == NULL) {
        return NULL;
    }
    PyObject *item = PyTuple_Pack(2, val, reply);
    Py_DECREF(reply);
    if (item == NULL || many != Py_True) {
        return item;
    }
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(item);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, item);
    return list;
}

/* request_cb(val, k): the reference's, with its common cases compiled. */
static PyObject *
request_cb_impl(QueueCore *self, PyObject *val, PyObject *k)
{
    int ok = ready(self);
    if (ok < 0) {
        return NULL;
    }
    if (!ok) {
        return PyObject_CallFunctionObjArgs(py_request_cb, (PyObject *)self, val, k, NULL);
    }
    int native = capi->is_live_native(k);
    PyObject *rk, *many;
    int took = take_native(self->receivers, &rk, &many);
    if (took < 0) {
        return NULL;
    }
    if (took == 2 || (took == 0 && !native)) {
        /* A host server (or a closed one) is first in line, or a host
         * task's request has to wait: the reference decides. */
        return PyObject_CallFunctionObjArgs(py_request_cb, (PyObject *)self, val, k, NULL);
    }
    if (took == 0) {
        if (push_native(self->requests, k, val) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *item = server_item(val, k, native, many);
    if (item == NULL) {
        /* The server stays first in line, as if it had not been taken. */
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyObject *entry = PyTuple_Pack(2, rk, many);
        PyObject *line = ((WaitersCore *)self->receivers)->line;
        PyObject *r = entry == NULL ? NULL
                                    : PyObject_CallMethodOneArg(line, str_appendleft, entry);
        Py_XDECREF(r);
        Py_XDECREF(entry);
        PyErr_Restore(type, exc, tb);
        Py_DECREF(rk);
        Py_DECREF(many);
        return NULL;
    }
    Py_DECREF(many);
    PyObject *answer = capi->native_send(rk, item);
    Py_DECREF(item);
    Py_DECREF(rk);
    if (answer == NULL) {
        return NULL;
    }
    Py_DECREF(answer);
    Py_RETURN_NONE;
}

static PyObject *
qc_request_cb(QueueCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"val", "k"};
    PyObject *a[2];
    if (kwnames != NULL || nargs != 2) {
        if (bind("request_cb", args, nargs, kwnames, names, 2, a) < 0) {
            return NULL;
        }
        return request_cb_impl(self, a[0], a[1]);
    }
    return request_cb_impl(self, args[0], args[1]);
}

/* get_one_cb(k): the reference's, with a native server lining up compiled. */
static PyObject *get_one_cb_impl(QueueCore *self, PyObject *k);

static PyObject *
qc_get_one_cb(QueueCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"k"};
    PyObject *a[1];
    if (kwnames != NULL || nargs != 1) {
        if (bind("get_one_cb", args, nargs, kwnames, names, 1, a) < 0) {
            return NULL;
        }
        return get_one_cb_impl(self, a[0]);
    }
    return get_one_cb_impl(self, args[0]);
}

static PyObject *
get_one_cb_impl(QueueCore *self, PyObject *k)
{
    int ok = ready(self);
    if (ok < 0) {
        return NULL;
    }
    if (ok && capi->is_live_native(k)) {
        Py_ssize_t waiting = PyObject_Length(((WaitersCore *)self->requests)->line);
        if (waiting < 0) {
            return NULL;
        }
        if (waiting == 0) {
            if (push_native(self->receivers, k, Py_False) < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    return PyObject_CallFunctionObjArgs(py_get_one_cb, (PyObject *)self, k, NULL);
}

/* ---------------------------------------------- a request, as shift's func */

typedef struct {
    PyObject_HEAD
    PyObject *queue;
    PyObject *val;
    vectorcallfunc vectorcall;  /* rq_vectorcall: shift calls it with no tuple of arguments */
} Request;

static PyTypeObject Request_Type;

static int
rq_traverse(Request *self, visitproc visit, void *arg)
{
    Py_VISIT(self->queue);
    Py_VISIT(self->val);
    return 0;
}

static int
rq_clear(Request *self)
{
    Py_CLEAR(self->queue);
    Py_CLEAR(self->val);
    return 0;
}

static void
rq_dealloc(Request *self)
{
    PyObject_GC_UnTrack(self);
    rq_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
rq_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Request *self = (Request *)callable;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "a request takes no keyword arguments");
        return NULL;
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "request expected 1 argument, got %zd", nargs);
        return NULL;
    }
    if (self->queue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this request was cleared");
        return NULL;
    }
    return request_cb_impl((QueueCore *)self->queue, self->val, args[0]);
}

static PyObject *
rq_repr(Request *self)
{
    if (self->queue == NULL) {
        return PyUnicode_FromString("<request (cleared)>");
    }
    return PyUnicode_FromFormat("<request %R to %R>", self->val, self->queue);
}

static PyTypeObject Request_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio.RequestQueue.request_cb",
    .tp_doc = "request_cb bound to a queue and a value: what request() hands to shift.",
    .tp_basicsize = sizeof(Request),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Request, vectorcall),
    .tp_traverse = (traverseproc)rq_traverse,
    .tp_clear = (inquiry)rq_clear,
    .tp_dealloc = (destructor)rq_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)rq_repr,
};

static PyObject *
qc_request(QueueCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"val"};
    PyObject *val;
    if (kwnames != NULL || nargs != 1) {
        if (bind("request", args, nargs, kwnames, names, 1, &val) < 0) {
            return NULL;
        }
    }
    else {
        val = args[0];
    }
    if (shift == NULL || partial == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the compiled RequestQueue is not set up");
        return NULL;
    }
    if ((PyObject *)Py_TYPE(self) != queue_type) {
        /* A subclass: the compiled request_cb only if it did not override it. */
        PyObject *own = PyObject_GetAttr((PyObject *)Py_TYPE(self), str_request_cb);
        if (own == NULL) {
            return NULL;
        }
        int overridden = own != compiled_request_cb;
        Py_DECREF(own);
        if (overridden) {
            /* As the reference does: shift(partial(self.request_cb, val)). */
            PyObject *bound = PyObject_GetAttr((PyObject *)self, str_request_cb);
            PyObject *func = bound == NULL ? NULL
                                           : PyObject_CallFunctionObjArgs(partial, bound, val, NULL);
            Py_XDECREF(bound);
            if (func == NULL) {
                return NULL;
            }
            PyObject *awaitable = PyObject_CallOneArg(shift, func);
            Py_DECREF(func);
            return awaitable;
        }
    }
    Request *rq = PyObject_GC_New(Request, &Request_Type);
    if (rq == NULL) {
        return NULL;
    }
    rq->queue = Py_NewRef((PyObject *)self);
    rq->val = Py_NewRef(val);
    rq->vectorcall = rq_vectorcall;
    PyObject_GC_Track(rq);
    PyObject *awaitable = PyObject_CallOneArg(shift, (PyObject *)rq);
    Py_DECREF(rq);
    return awaitable;
}

/* ------------------------------------------- get_one(), as an awaitable */

/* What get_one() returns: on its first step it takes a request whose
 * requester is a live native continuation straight off the line, as the
 * reference's fast path does; otherwise it awaits shift(queue.get_one_cb)
 * and hands every step on to it.  Nothing is taken before the first step,
 * so an awaitable that is never awaited loses no request. */

static PyObject *str_get_one_cb = NULL;

/* queue.get_one_cb, bound: made straight from the compiled method where
 * that is what the generic look-up finds (and no instance dict can hide it). */
static PyObject *
bound_get_one_cb(PyObject *queue)
{
    PyObject *descr = class_attribute_for_instances(Py_TYPE(queue), str_get_one_cb);
    if (is_method_of(descr, (PyCFunction)(void (*)(void))qc_get_one_cb)) {
        return PyCFunction_NewEx(((PyMethodDescrObject *)descr)->d_method, queue, NULL);
    }
    return PyObject_GetAttr(queue, str_get_one_cb);
}

enum { GO_FRESH, GO_SHIFT, GO_DONE };

typedef struct {
    PyObject_HEAD
    PyObject *queue; /* until the first step */
    PyObject *inner; /* the shift awaited, while GO_SHIFT */
    int state;
} GetOne;

static PyTypeObject GetOne_Type;

static int
go_traverse(GetOne *self, visitproc visit, void *arg)
{
    Py_VISIT(self->queue);
    Py_VISIT(self->inner);
    return 0;
}

static int
go_clear(GetOne *self)
{
    Py_CLEAR(self->queue);
    Py_CLEAR(self->inner);
    return 0;
}

static void
go_dealloc(GetOne *self)
{
    PyObject_GC_UnTrack(self);
    go_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PySendResult
go_am_send(GetOne *self, PyObject *arg, PyObject **result)
{
    if (self->state == GO_FRESH) {
        PyObject *queue = self->queue;
        self->queue = NULL;
        self->state = GO_DONE;
        if (arg != Py_None) {
            Py_DECREF(queue);
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started get_one()");
            *result = NULL;
            return PYGEN_ERROR;
        }
        int ok = ready((QueueCore *)queue);
        PyObject *k, *val;
        int took = ok == 1 ? take_native(((QueueCore *)queue)->requests, &k, &val) : ok;
        if (took < 0) {
            Py_DECREF(queue);
            *result = NULL;
            return PYGEN_ERROR;
        }
        if (took == 1) {
            /* A native requester needs no Reply guard. */
            Py_DECREF(queue);
            *result = PyTuple_Pack(2, val, k);
            Py_DECREF(val);
            Py_DECREF(k);
            return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
        }
        PyObject *func = bound_get_one_cb(queue);
        Py_DECREF(queue);
        self->inner = func == NULL ? NULL : PyObject_CallOneArg(shift, func);
        Py_XDECREF(func);
        if (self->inner == NULL) {
            *result = NULL;
            return PYGEN_ERROR;
        }
        self->state = GO_SHIFT;
    }
    if (self->state == GO_SHIFT) {
        PyObject *inner = Py_NewRef(self->inner); /* held while it runs */
        PySendResult r = PyIter_Send(inner, arg, result);
        Py_DECREF(inner);
        if (r != PYGEN_NEXT && self->state == GO_SHIFT) {
            self->state = GO_DONE;
            Py_CLEAR(self->inner);
        }
        return r;
    }
    PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited get_one()");
    *result = NULL;
    return PYGEN_ERROR;
}

static PyObject *
go_await(PyObject *self)
{
    return Py_NewRef(self);
}

/* Finish with return value result (stolen) the iterator way. */
static PyObject *
go_stop(PyObject *result)
{
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, result);
    Py_DECREF(result);
    if (e != NULL) {
        PyErr_SetObject(PyExc_StopIteration, e);
        Py_DECREF(e);
    }
    return NULL;
}

static PyObject *
go_send(GetOne *self, PyObject *arg)
{
    PyObject *result;
    PySendResult r = go_am_send(self, arg, &result);
    if (r == PYGEN_NEXT) {
        return result;
    }
    return r == PYGEN_RETURN ? go_stop(result) : NULL;
}

static PyObject *
go_iternext(GetOne *self)
{
    PyObject *result;
    PySendResult r = go_am_send(self, Py_None, &result);
    if (r == PYGEN_NEXT) {
        return result;
    }
    /* The core's way to finish with a value: no StopIteration for None, a
     * spare one refilled otherwise. */
    return r == PYGEN_RETURN ? capi->stop_with(result) : NULL;
}

/* The shift a get_one() waits in, once it has one (the core passes a value
 * sent into the get_one straight to it). */
static PyObject *
go_inner(PyObject *self)
{
    GetOne *go = (GetOne *)self;
    return go->state == GO_SHIFT ? go->inner : NULL;
}

static PyObject *
go_throw(GetOne *self, PyObject *args)
{
    if (self->state == GO_SHIFT) {
        PyObject *meth = PyObject_GetAttrString(self->inner, "throw");
        PyObject *r = meth == NULL ? NULL : PyObject_Call(meth, args, NULL);
        Py_XDECREF(meth);
        if (r == NULL) {
            self->state = GO_DONE;
            Py_CLEAR(self->inner);
        }
        return r;
    }
    /* Not started (nothing taken), or over: raised here. */
    self->state = GO_DONE;
    go_clear(self);
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
go_close(GetOne *self, PyObject *unused)
{
    PyObject *inner = self->state == GO_SHIFT ? Py_NewRef(self->inner) : NULL;
    self->state = GO_DONE;
    go_clear(self);
    if (inner == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *r = PyObject_CallMethod(inner, "close", NULL);
    Py_DECREF(inner);
    return r;
}

static PyObject *
go_repr(GetOne *self)
{
    return PyUnicode_FromString("<RequestQueue.get_one() awaitable>");
}

static PyMethodDef go_methods[] = {
    {"send", (PyCFunction)go_send, METH_O, NULL},
    {"throw", (PyCFunction)go_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)go_close, METH_NOARGS, NULL},
    {NULL}
};

static PyAsyncMethods go_as_async = {
    .am_await = go_await,
    .am_send = (sendfunc)go_am_send,
};

static PyTypeObject GetOne_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio.RequestQueue.get_one",
    .tp_doc = "What RequestQueue.get_one() returns: await it for (request, reply continuation).",
    .tp_basicsize = sizeof(GetOne),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_repr = (reprfunc)go_repr,
    .tp_traverse = (traverseproc)go_traverse,
    .tp_clear = (inquiry)go_clear,
    .tp_dealloc = (destructor)go_dealloc,
    .tp_as_async = &go_as_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)go_iternext,
    .tp_methods = go_methods,
};

static PyObject *
qc_get_one(QueueCore *self, PyObject *unused)
{
    if (shift == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the compiled RequestQueue is not set up");
        return NULL;
    }
    GetOne *go = PyObject_GC_New(GetOne, &GetOne_Type);
    if (go == NULL) {
        return NULL;
    }
    go->queue = Py_NewRef((PyObject *)self);
    go->inner = NULL;
    go->state = GO_FRESH;
    PyObject_GC_Track(go);
    return (PyObject *)go;
}

static PyMemberDef qc_members[] = {
    {"_closed", T_OBJECT_EX, offsetof(QueueCore, closed), 0, NULL},
    {"_closed_tb", T_OBJECT_EX, offsetof(QueueCore, closed_tb), 0, NULL},
    {"_receivers", T_OBJECT_EX, offsetof(QueueCore, receivers), 0, NULL},
    {"_requests", T_OBJECT_EX, offsetof(QueueCore, requests), 0, NULL},
    {NULL}
};

static PyMethodDef qc_methods[] = {
    {"request", (PyCFunction)(void (*)(void))qc_request, METH_FASTCALL | METH_KEYWORDS,
     "request($self, val)\n--\n\n"
     "Send val and wait for the server's reply (or the error it throws).\n\n"
     "Use as ``reply = await queue.request(val)``."},
    {"request_cb", (PyCFunction)(void (*)(void))qc_request_cb, METH_FASTCALL | METH_KEYWORDS,
     "request_cb($self, val, k)\n--\n\nMake request val; the reply resumes k."},
    {"get_one", (PyCFunction)qc_get_one, METH_NOARGS,
     "get_one($self)\n--\n\n"
     "Wait for the next request; returns it with the continuation to reply on."},
    {"get_one_cb", (PyCFunction)(void (*)(void))qc_get_one_cb, METH_FASTCALL | METH_KEYWORDS,
     "get_one_cb($self, k)\n--\n\n"
     "Resume k with the next request and its reply continuation."},
    {NULL}
};

static PyTypeObject QueueCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._primitives._queue_c.RequestQueueCore",
    .tp_doc = "The compiled part of RequestQueue: its fields and its common steps.",
    .tp_basicsize = sizeof(QueueCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)qc_traverse,
    .tp_clear = (inquiry)qc_clear,
    .tp_dealloc = (destructor)qc_dealloc,
    .tp_members = qc_members,
    .tp_methods = qc_methods,
};

/* ---------------------------------------------------------- the reply guard */

/* Registered by setup(). */
static PyObject *native_type = NULL;      /* NativeContinuation */
static PyObject *never_cancelled = NULL;  /* AnsweringContinuation.is_cancelled */
static PyObject *reply_type = NULL;       /* Reply */
static PyObject *py_resume_unless_cancelled = NULL; /* _waiters.resume_unless_cancelled */
static PyObject *str_is_cancelled, *str_resume_unless_cancelled, *str_refused, *str_throw;

/* The fields of Reply (whose methods not here are Python's). */
typedef struct {
    PyObject_HEAD
    PyObject *k; /* the requester's continuation */
} ReplyCore;

static PyTypeObject ReplyCore_Type;

static int
rc_traverse(ReplyCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->k);
    return 0;
}

static int
rc_clear(ReplyCore *self)
{
    Py_CLEAR(self->k);
    return 0;
}

static void
rc_dealloc(ReplyCore *self)
{
    PyObject_GC_UnTrack(self);
    rc_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
rc_init(ReplyCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"k", NULL};
    PyObject *k;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Reply", kwlist, &k)) {
        return -1;
    }
    Py_XSETREF(self->k, Py_NewRef(k));
    return 0;
}

/* _waiters.resume_unless_cancelled(k, is_exc, value), without its tuple:
 * 1 delivered (*answer set), 0 refused, -1 error. */
static int
resume_unless_cancelled(PyObject *k, int is_exc, PyObject *value, PyObject **answer)
{
    *answer = NULL;
    if (capi->is_live_native(k)) {
        /* A native one is cancelled only by closing its coroutine. */
        *answer = is_exc ? PyObject_CallMethodOneArg(k, str_throw, value)
                         : capi->native_send(k, value);
        return *answer == NULL ? -1 : 1;
    }
    PyObject *r;
    PyObject *method = class_attribute_for_instances(Py_TYPE(k), str_resume_unless_cancelled);
    PyObject *atomic = NULL;
    if (method != NULL
        && (PyFunction_Check(method) || Py_IS_TYPE(method, &PyMethodDescr_Type))) {
        /* A method of the class, found by the generic look-up with no
         * instance dict to hide it: called as the bound method the look-up
         * makes would call it, without making one. */
        PyObject *args[3] = {k, is_exc ? Py_True : Py_False, value};
        Py_INCREF(method);
        r = PyObject_Vectorcall(method, args, 3, NULL);
        Py_DECREF(method);
    }
    else if ((atomic = PyObject_GetAttr(k, str_resume_unless_cancelled)) != NULL) {
        PyObject *args[2] = {is_exc ? Py_True : Py_False, value};
        r = PyObject_Vectorcall(atomic, args, 2, NULL);
        Py_DECREF(atomic);
    }
    else if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        /* Any other kind: the reference checks first. */
        PyErr_Clear();
        r = PyObject_CallFunctionObjArgs(py_resume_unless_cancelled, k,
                                         is_exc ? Py_True : Py_False, value, NULL);
    }
    else {
        return -1;
    }
    if (r == NULL) {
        return -1;
    }
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "_resume_unless_cancelled() must return (delivered, answer)");
        return -1;
    }
    int delivered = PyObject_IsTrue(PyTuple_GET_ITEM(r, 0));
    if (delivered == 1) {
        *answer = Py_NewRef(PyTuple_GET_ITEM(r, 1));
    }
    Py_DECREF(r);
    return delivered;
}

/* Resume the requester; raise RequestCancelledError if it was cancelled. */
static PyObject *
rc_resume(ReplyCore *self, int is_exc, PyObject *value)
{
    if (self->k == NULL || py_resume_unless_cancelled == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: this reply is not set up");
        return NULL;
    }
    PyObject *answer;
    int delivered = resume_unless_cancelled(self->k, is_exc, value, &answer);
    if (delivered < 0) {
        return NULL;
    }
    if (delivered) {
        return answer;
    }
    PyObject *exc = PyObject_CallMethodOneArg((PyObject *)self, str_refused, value);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *
rc_send(ReplyCore *self, PyObject *value)
{
    return rc_resume(self, 0, value);
}

static PyObject *
rc_throw(ReplyCore *self, PyObject *exc)
{
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_Format(PyExc_TypeError, "throw() takes an exception instance, not %R", exc);
        return NULL;
    }
    return rc_resume(self, 1, exc);
}

static PyObject *
rc_call(ReplyCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *value = only_argument(args, kwds, "a reply", "send");
    if (value == NULL) {
        return NULL;
    }
    return rc_resume(self, 0, value);
}

static PyObject *
rc_resume_unless_cancelled(ReplyCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_resume_unless_cancelled(is_exc, value)");
        return NULL;
    }
    int is_exc = PyObject_IsTrue(args[0]);
    if (is_exc < 0) {
        return NULL;
    }
    if (self->k == NULL || py_resume_unless_cancelled == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: this reply is not set up");
        return NULL;
    }
    PyObject *answer;
    int delivered = resume_unless_cancelled(self->k, is_exc, args[1], &answer);
    if (delivered < 0) {
        return NULL;
    }
    if (!delivered) {
        return PyTuple_Pack(2, Py_False, Py_None);
    }
    PyObject *r = PyTuple_Pack(2, Py_True, answer);
    Py_DECREF(answer);
    return r;
}

static PyMemberDef rc_members[] = {
    {"_k", T_OBJECT_EX, offsetof(ReplyCore, k), READONLY, "the requester's continuation"},
    {NULL}
};

static PyMethodDef rc_methods[] = {
    {"send", (PyCFunction)rc_send, METH_O,
     "send($self, value, /)\n--\n\nReply with value (RequestCancelledError if refused)."},
    {"throw", (PyCFunction)rc_throw, METH_O,
     "throw($self, exc, /)\n--\n\nReply with the exception exc."},
    {"_resume_unless_cancelled", (PyCFunction)(void (*)(void))rc_resume_unless_cancelled,
     METH_FASTCALL, "Resume the requester unless it is cancelled: (delivered, answer)."},
    {NULL}
};

static PyTypeObject ReplyCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dneio._primitives._queue_c.ReplyCore",
    .tp_doc = "ReplyCore(k): the compiled part of a reply to a host requester.",
    .tp_basicsize = sizeof(ReplyCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rc_init,
    .tp_traverse = (traverseproc)rc_traverse,
    .tp_clear = (inquiry)rc_clear,
    .tp_dealloc = (destructor)rc_dealloc,
    .tp_call = (ternaryfunc)rc_call,
    .tp_members = rc_members,
    .tp_methods = rc_methods,
};

/* _reply_to(k): k itself if it can never be cancelled, else Reply(k). */
static PyObject *
reply_to_impl(PyObject *k)
{
    if (native_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dneio: the compiled RequestQueue is not set up");
        return NULL;
    }
    PyTypeObject *kind = Py_TYPE(k);
    if ((PyObject *)kind == native_type) {
        return Py_NewRef(k);
    }
    /* kind.is_cancelled is never_cancelled: where the class's own look-up
     * is type's, and its metaclass has no such attribute, what the class
     * holds is what the look-up returns (a function is its own attribute
     * on the class); otherwise, and when it is not found, the look-up
     * itself answers (and raises as the reference does). */
    int never = -1;
    PyTypeObject *meta = Py_TYPE((PyObject *)kind);
    if (meta->tp_getattro == PyType_Type.tp_getattro
        && _PyType_Lookup(meta, str_is_cancelled) == NULL) {
        PyObject *found = _PyType_Lookup(kind, str_is_cancelled); /* borrowed */
        if (found == never_cancelled) {
            never = 1;
        }
        else if (found != NULL && (PyFunction_Check(found) || Py_IS_TYPE(found, &PyMethodDescr_Type))) {
            never = 0;
        }
    }
    if (never < 0) {
        PyObject *check = PyObject_GetAttr((PyObject *)kind, str_is_cancelled);
        if (check == NULL) {
            return NULL;
        }
        Py_DECREF(check);
        never = check == never_cancelled;
    }
    if (never) {
        return Py_NewRef(k);
    }
    PyTypeObject *tp = (PyTypeObject *)reply_type;
    if (tp->tp_init == (initproc)rc_init && tp->tp_new == PyType_GenericNew) {
        ReplyCore *reply = (ReplyCore *)tp->tp_alloc(tp, 0);
        if (reply != NULL) {
            reply->k = Py_NewRef(k);
        }
        return (PyObject *)reply;
    }
    return PyObject_CallOneArg(reply_type, k);
}

static PyObject *
reply_to(PyObject *module, PyObject *k)
{
    return reply_to_impl(k);
}

/* ------------------------------------------------------------- the module */

static PyObject *
setup(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"request_cb", "get_one_cb", "resume_unless_cancelled", "shift",
                             "queue_type", "native_type", "never_cancelled", "reply_type",
                             NULL};
    PyObject *a[8];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOO:setup", kwlist, &a[0], &a[1], &a[2],
                                     &a[3], &a[4], &a[5], &a[6], &a[7])) {
        return NULL;
    }
    if (!PyType_Check(a[7]) || !PyType_IsSubtype((PyTypeObject *)a[7], &ReplyCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup: reply_type must be a subclass of ReplyCore");
        return NULL;
    }
    if (!PyType_Check(a[4]) || !PyType_IsSubtype((PyTypeObject *)a[4], &QueueCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup: queue_type must be a subclass of RequestQueueCore");
        return NULL;
    }
    Py_XSETREF(queue_type, Py_NewRef(a[4]));
    for (int i = 0; i < 4; i++) {
        if (!PyCallable_Check(a[i])) {
            PyErr_Format(PyExc_TypeError, "setup: %s must be callable", kwlist[i]);
            return NULL;
        }
    }
    Py_XSETREF(py_request_cb, Py_NewRef(a[0]));
    Py_XSETREF(py_get_one_cb, Py_NewRef(a[1]));
    Py_XSETREF(py_resume_unless_cancelled, Py_NewRef(a[2]));
    Py_XSETREF(native_type, Py_NewRef(a[5]));
    Py_XSETREF(never_cancelled, Py_NewRef(a[6]));
    Py_XSETREF(reply_type, Py_NewRef(a[7]));
    Py_XSETREF(shift, Py_NewRef(a[3]));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "Register the reference methods the fast path hands unusual cases to."},
    {"reply_to", reply_to, METH_O,
     "What a server replies on for the requester k: k itself if it can never be "
     "cancelled, else Reply(k)."},
    {NULL}
};

static struct PyModuleDef queue_c_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dneio._primitives._queue_c",
    .m_doc = "The compiled fast path of dneio's RequestQueue.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__queue_c(void)
{
    capi = (DneioCAPI *)PyCapsule_Import(DNEIO_CAPI_NAME, 0);
    if (capi == NULL) {
        return NULL;
    }
    if (capi->version != DNEIO_CAPI_VERSION) {
        capi = NULL;
        PyErr_SetString(PyExc_ImportError, "dneio: the compiled core is of another version");
        return NULL;
    }
    if (PyType_Ready(&QueueCore_Type) < 0 || PyType_Ready(&Request_Type) < 0
        || PyType_Ready(&WaitersCore_Type) < 0 || PyType_Ready(&ReplyCore_Type) < 0
        || PyType_Ready(&GetOne_Type) < 0
        || capi->add_passing_type(&GetOne_Type, go_inner) < 0) {
        return NULL;
    }
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return NULL;
    }
    deque_type = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque_type == NULL) {
        return NULL;
    }
    deque_append = PyObject_GetAttrString(deque_type, "append");
    deque_popleft = PyObject_GetAttrString(deque_type, "popleft");
    if (deque_append == NULL || deque_popleft == NULL) {
        return NULL;
    }
    str_sweep = PyUnicode_InternFromString("_sweep");
    str_appendleft = PyUnicode_InternFromString("appendleft");
    str_request_cb = PyUnicode_InternFromString("request_cb");
    str_is_cancelled = PyUnicode_InternFromString("is_cancelled");
    str_get_one_cb = PyUnicode_InternFromString("get_one_cb");
    str_resume_unless_cancelled = PyUnicode_InternFromString("_resume_unless_cancelled");
    str_refused = PyUnicode_InternFromString("_refused");
    str_throw = PyUnicode_InternFromString("throw");
    if (str_sweep == NULL || str_appendleft == NULL || str_request_cb == NULL
        || str_is_cancelled == NULL || str_resume_unless_cancelled == NULL
        || str_refused == NULL || str_throw == NULL || str_get_one_cb == NULL) {
        return NULL;
    }
    compiled_request_cb = PyObject_GetAttr((PyObject *)&QueueCore_Type, str_request_cb);
    PyObject *functools = PyImport_ImportModule("functools");
    if (functools == NULL || compiled_request_cb == NULL) {
        Py_XDECREF(functools);
        return NULL;
    }
    partial = PyObject_GetAttrString(functools, "partial");
    Py_DECREF(functools);
    if (partial == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&queue_c_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "RequestQueueCore", (PyObject *)&QueueCore_Type) < 0
        || PyModule_AddObjectRef(m, "WaitersCore", (PyObject *)&WaitersCore_Type) < 0
        || PyModule_AddObjectRef(m, "ReplyCore", (PyObject *)&ReplyCore_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
