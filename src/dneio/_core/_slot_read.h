/* Reading a plain slot of one class at its offset, for the compiled parts.
 *
 * An attribute that the compiled fast paths read on every operation, and
 * that is a plain slot (a member descriptor from __slots__) of a known
 * class, is read at the slot's offset, for instances of exactly that class
 * while the class is unchanged since set_slot_read() (the version tag
 * CPython gives a class changes whenever the class is modified); by name,
 * through the attribute look-up, in every other case, and when the slot is
 * empty (which raises the AttributeError the look-up raises).  The result
 * is the look-up's: the member descriptor found on the class is what the
 * look-up would use, and it reads the same offset.
 */

#ifndef DNEIO_SLOT_READ_H
#define DNEIO_SLOT_READ_H

#include <Python.h>
#include <structmember.h>

typedef struct {
    PyTypeObject *type; /* NULL: always by name */
    unsigned int tag;   /* the class's version tag when set up */
    Py_ssize_t offset;
    PyObject **name;    /* the attribute's (interned) name */
} SlotRead;

/* A read of the attribute named by the str object in ``name_var``. */
#define SLOT_READ(name_var) {NULL, 0, 0, &(name_var)}

/* obj's attribute (a new reference), or NULL with an exception set. */
static inline PyObject *
read_slot(SlotRead *r, PyObject *obj)
{
    if (Py_TYPE(obj) == r->type && r->type->tp_version_tag == r->tag) {
        PyObject *v = *(PyObject **)((char *)obj + r->offset);
        if (v != NULL) {
            return Py_NewRef(v);
        }
    }
    return PyObject_GetAttr(obj, *r->name);
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
    if (!PyType_Check(type)) {
        PyErr_Format(PyExc_TypeError, "expected a class, not %R", type);
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    /* The look-up also gives the class a version tag, if it can have one. */
    PyObject *member = _PyType_Lookup(tp, *r->name); /* borrowed */
    if (member != NULL && Py_IS_TYPE(member, &PyMemberDescr_Type) && tp->tp_version_tag != 0) {
        PyMemberDef *def = ((PyMemberDescrObject *)member)->d_member;
        if (def->type == T_OBJECT_EX && !(def->flags & READ_RESTRICTED)) {
            r->type = (PyTypeObject *)Py_NewRef(type);
            r->tag = tp->tp_version_tag;
            r->offset = def->offset;
        }
    }
    return 0;
}

/* The reads in ``reads`` that go by offset now, as "Class.name" (a list). */
static inline PyObject *
slot_reads_by_offset(SlotRead *const *reads, size_t n)
{
    PyObject *result = PyList_New(0);
    for (size_t i = 0; result != NULL && i < n; i++) {
        SlotRead *r = reads[i];
        if (r->type != NULL && r->type->tp_version_tag == r->tag) {
            PyObject *s = PyUnicode_FromFormat("%s.%U", r->type->tp_name, *r->name);
            if (s == NULL || PyList_Append(result, s) < 0) {
                Py_CLEAR(result);
            }
            Py_XDECREF(s);
        }
    }
    return result;
}

#endif /* DNEIO_SLOT_READ_H */
