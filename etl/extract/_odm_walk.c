/* The subjects of a plain ODM export, read in C: `odm_subjects`' hot loop without a Python step per ItemData.
 *
 * `read(clinical, namespace, study, version, shift, batch_rows, start, eager_groups)` walks the SubjectData
 * of a parsed ClinicalData (an lxml element), from its child number `start`, down the libxml2 tree lxml
 * built, and returns the columns of the rows `odm_subjects._Subjects` reads from those subjects
 * (`_container`; `_lean_subject` with eager_groups, which gives every group a frame at once), cut after
 * the subject that brings the rows to `batch_rows`: (next start or -1 at the end, rows, frames, frame
 * index, the 9 keys, sites, audits, item OIDs, values, is-null bytes, TransactionTypes or None when no
 * row has one, lines); a row's audit is its ItemData's AuditRecord, else its nearest container's. It
 * returns None for anything it does not read exactly as the Python walk does (an element out of place, an
 * attribute that is not one text node, a DTD, a line libxml2 may not know): the caller then reads those
 * subjects in Python, whose rows, refusals and errors are the reference.
 *
 * It only reads the tree, which the caller's `clinical` keeps alive; every value is copied into the
 * columns before it returns. lxml's public header gives the element's node (`struct LxmlElement`).
 * The walk itself runs without the GIL (its buffers come from the raw allocator), so that another
 * thread parses the next part meanwhile (`odm_chunks`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include <libxml/tree.h>
#include <libxml/xmlversion.h>
#include "lxml-version.h"
#include "lxml.etree.h"

static const xmlChar EMPTY[] = "";
static PyTypeObject *element_type; /* lxml.etree._Element */

/* ---- growing byte buffers, and Text columns (odm_xml.Text: values joined by NUL, nulls' positions) ---- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_add(Buf *b, const void *src, Py_ssize_t n) {
    if (n == 0) return 0; /* nothing to copy: an empty value to a buffer not yet allocated */
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *data = PyMem_RawRealloc(b->data, cap);
        if (data == NULL) return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

typedef struct {
    Buf joined, nulls; /* nulls: Py_ssize_t positions */
    Py_ssize_t count;
} Text;

static int text_add(Text *t, const xmlChar *value) {
    if (t->count > 0 && buf_add(&t->joined, "\0", 1) < 0) return -1;
    if (value == NULL) {
        Py_ssize_t at = t->count;
        if (buf_add(&t->nulls, &at, sizeof at) < 0) return -1;
    } else if (buf_add(&t->joined, value, (Py_ssize_t)strlen((const char *)value)) < 0) {
        return -1;
    }
    t->count++;
    return 0;
}

static PyObject *text_object(const Text *t) { /* (bytes, [positions]) */
    Py_ssize_t n = t->nulls.len / (Py_ssize_t)sizeof(Py_ssize_t);
    PyObject *nulls = PyList_New(n);
    if (nulls == NULL) return NULL;
    const Py_ssize_t *at = (const Py_ssize_t *)t->nulls.data;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *number = PyLong_FromSsize_t(at[i]);
        if (number == NULL) {
            Py_DECREF(nulls);
            return NULL;
        }
        PyList_SET_ITEM(nulls, i, number);
    }
    return Py_BuildValue("(y#N)", t->joined.data ? t->joined.data : "", t->joined.len, nulls);
}

/* ---- the tree ---- */

#define KEYS 9 /* study, metadata version, subject, event, event repeat, form, form repeat, group, group repeat */

typedef struct {
    Py_ssize_t row;
    const xmlChar *user, *stamp, *reason;
} Audit;

/* A container's AuditRecord, for its rows [audit.row, end) that have none nearer (`audit_columns`). */
typedef struct {
    Audit audit;
    Py_ssize_t end;
} Fill;

typedef struct {
    const xmlChar *namespace; /* NULL: no namespace */
    int eager_groups;         /* every group a frame, as the lean walk (`_lean_subject`) gives them */
    Text keys[KEYS], sites, item_oid, value, tt;
    Buf frame_index, line, audits, fills, is_null;
    Py_ssize_t rows, frames;
    int any_tt;
    long shift;
} Walk;

enum { READ = 0, LEFT = 1, FAILED = -1 }; /* LEFT: not read here, the Python walk reads it */

/* Whether `ns` is the namespace `href` (NULL: none). */
static int in_namespace(const xmlNs *ns, const char *href) {
    if (href == NULL) return ns == NULL;
    return ns != NULL && ns->href != NULL && strcmp((const char *)ns->href, href) == 0;
}

static int is(const xmlNode *node, const Walk *w, const char *name) {
    return node->type == XML_ELEMENT_NODE && strcmp((const char *)node->name, name) == 0
           && in_namespace(node->ns, (const char *)w->namespace);
}
#define IS(node, name) is(node, w, name)

/* The next child lxml iterates (an element; text is skipped): *left set for a comment, a processing
 * instruction or an entity reference, which the Python walk refuses. */
static xmlNode *next_element(xmlNode *node, int *left) {
    for (; node != NULL; node = node->next) {
        if (node->type == XML_ELEMENT_NODE) return node;
        if (node->type != XML_TEXT_NODE && node->type != XML_CDATA_SECTION_NODE) {
            *left = 1;
            return NULL;
        }
    }
    return NULL;
}
#define CHILDREN(child, parent)                                                            \
    for (xmlNode *child = next_element((parent)->children, &left); child != NULL; \
         child = next_element(child->next, &left))

static int has_elements(xmlNode *node, int *left) { return next_element(node->children, left) != NULL; }

/* An attribute's value, as lxml's get() gives it; *left set when it is not one text node. */
static const xmlChar *value_of(const xmlAttr *a, int *left) {
    const xmlNode *text = a->children;
    if (text == NULL) return EMPTY;
    if (text->type != XML_TEXT_NODE || text->next != NULL) {
        *left = 1;
        return NULL;
    }
    return text->content ? text->content : EMPTY;
}

/* The attribute `name` in the namespace `href` (NULL: none): NULL when absent. */
static const xmlChar *attribute_in(const xmlNode *node, const char *href, const char *name, int *left) {
    for (const xmlAttr *a = node->properties; a != NULL; a = a->next)
        if (in_namespace(a->ns, href) && strcmp((const char *)a->name, name) == 0) return value_of(a, left);
    return NULL;
}

static const xmlChar *attribute(const xmlNode *node, const char *name, int *left) {
    return attribute_in(node, NULL, name, left);
}

/* An element's text, as lxml's .text gives it for one text node (several: *left). */
static const xmlChar *text_of(const xmlNode *node, int *left) {
    const xmlNode *text = node->children;
    if (text == NULL || (text->type != XML_TEXT_NODE && text->type != XML_CDATA_SECTION_NODE)) return NULL;
    if (text->next != NULL && (text->next->type == XML_TEXT_NODE || text->next->type == XML_CDATA_SECTION_NODE)) {
        *left = 1;
        return NULL;
    }
    return text->content ? text->content : EMPTY;
}

/* An AuditRecord's user, date-time and reason, as `_Subjects._audit` reads them. */
static int read_audit(const Walk *w, xmlNode *record, Audit *audit) {
    int left = 0;
    audit->user = audit->stamp = audit->reason = NULL;
    CHILDREN(child, record) {
        if (has_elements(child, &left) || left) return LEFT;
        if (IS(child, "UserRef")) {
            audit->user = attribute(child, "UserOID", &left);
        } else if (IS(child, "DateTimeStamp")) {
            audit->stamp = text_of(child, &left);
        } else if (IS(child, "ReasonForChange")) {
            audit->reason = text_of(child, &left);
        } else if (!IS(child, "LocationRef") && !IS(child, "SourceID")) {
            return LEFT;
        }
    }
    return left ? LEFT : READ;
}

/* An ItemData's AuditRecord (the last, if several), its row's own. */
static int item_audit(Walk *w, xmlNode *item) {
    int left = 0, found = 0;
    Audit audit = {w->rows, NULL, NULL, NULL};
    CHILDREN(record, item) {
        if (!IS(record, "AuditRecord") || read_audit(w, record, &audit) != READ) return LEFT;
        found = 1;
    }
    if (left) return LEFT;
    if (found && buf_add(&w->audits, &audit, sizeof audit) < 0) return FAILED;
    return READ;
}

/* A container's AuditRecord (the last of its children, wherever it stands) and whether it has one. */
typedef struct {
    Audit audit;
    int found;
    Py_ssize_t first_row; /* its first row (its own, when removed): the rows below it follow */
} ContainerAudit;

static int container_audit(const Walk *w, xmlNode *record, ContainerAudit *c) {
    c->found = 1;
    return read_audit(w, record, &c->audit);
}

/* Its AuditRecord for the container's rows, once they are all read (so nearer ones come first). */
static int fill(Walk *w, ContainerAudit *c) {
    if (!c->found) return READ;
    Fill f = {c->audit, w->rows};
    f.audit.row = c->first_row;
    return buf_add(&w->fills, &f, sizeof f) < 0 ? FAILED : READ;
}

/* A container being read: its keys (those of the levels below it NULL), its TransactionType (its own, else
 * its parent's), and its index in the batch's frame table once a row points to it (-1 before), as
 * `_Subjects._container` keeps its frame. */
typedef struct {
    const xmlChar *keys[KEYS];
    const xmlChar *tt;
    Py_ssize_t index;
} Frame;

static int frame_index(Walk *w, Frame *f) {
    if (f->index < 0) {
        if (w->frames >= INT32_MAX) return LEFT; /* frame indexes are int32 */
        for (int k = 0; k < KEYS; k++)
            if (text_add(&w->keys[k], f->keys[k]) < 0) return FAILED;
        f->index = w->frames++;
    }
    return READ;
}

/* The attributes a row reads (no namespace), in one pass over them: *left for a value of several nodes. */
typedef struct {
    const xmlChar *oid, *value, *is_null, *tt;
} RowAttributes;

static void row_attributes(const xmlNode *node, RowAttributes *found, int *left) {
    memset(found, 0, sizeof *found);
    for (const xmlAttr *a = node->properties; a != NULL; a = a->next) {
        if (a->ns != NULL) continue;
        const char *name = (const char *)a->name;
        const xmlChar **to = strcmp(name, "ItemOID") == 0           ? &found->oid
                             : strcmp(name, "Value") == 0           ? &found->value
                             : strcmp(name, "IsNull") == 0          ? &found->is_null
                             : strcmp(name, "TransactionType") == 0 ? &found->tt
                                                                    : NULL;
        if (to != NULL) *to = value_of(a, left);
    }
}

static int add_row(Walk *w, const xmlChar *oid, const xmlChar *value, char is_null, const xmlChar *tt,
                   const xmlNode *node, Py_ssize_t frame) {
    if (node->line == 0 || node->line >= 65535) return LEFT; /* libxml2 may not know the line */
    int64_t line = (int64_t)w->shift + (int64_t)node->line;
    int32_t index = (int32_t)frame;
    if (text_add(&w->item_oid, oid) < 0 || text_add(&w->value, value) < 0 || buf_add(&w->is_null, &is_null, 1) < 0
        || text_add(&w->tt, tt) < 0 || buf_add(&w->line, &line, sizeof line) < 0
        || buf_add(&w->frame_index, &index, sizeof index) < 0)
        return FAILED;
    w->any_tt |= tt != NULL;
    w->rows++;
    return READ;
}

static int is_yes(const xmlChar *value) { return value != NULL && strcmp((const char *)value, "Yes") == 0; }

static const char DATASET_XML[] = "http://www.cdisc.org/ns/Dataset-XML/v1.0"; /* odm_xml.DATASET_XML_SEQ's */

/* A container's frame (level 0 a subject ... 3 a group) below `parent`, and its own row when a transactional
 * export removes it. */
static int open_container(Walk *w, const xmlNode *node, const Frame *parent, Frame *f, int level) {
    int left = 0;
    memcpy(f->keys, parent->keys, sizeof f->keys);
    if (level == 0) {
        f->keys[2] = attribute(node, "SubjectKey", &left);
    } else if (level == 1) {
        f->keys[3] = attribute(node, "StudyEventOID", &left);
        f->keys[4] = attribute(node, "StudyEventRepeatKey", &left);
    } else if (level == 2) {
        f->keys[5] = attribute(node, "FormOID", &left);
        f->keys[6] = attribute(node, "FormRepeatKey", &left);
    } else {
        f->keys[7] = attribute(node, "ItemGroupOID", &left);
        const xmlChar *repeat = attribute(node, "ItemGroupRepeatKey", &left);
        if (repeat == NULL) repeat = attribute(node, "ItemGroupDataSeq", &left);
        if (repeat == NULL) repeat = attribute_in(node, DATASET_XML, "ItemGroupDataSeq", &left);
        f->keys[8] = repeat;
    }
    RowAttributes own;
    row_attributes(node, &own, &left);
    if (left) return LEFT;
    f->tt = own.tt != NULL ? own.tt : parent->tt;
    f->index = -1;
    if (own.tt == NULL || strcmp((const char *)own.tt, "Remove") != 0) return READ;
    int done = frame_index(w, f);
    return done != READ ? done : add_row(w, own.oid, own.value, (char)is_yes(own.is_null), own.tt, node, f->index);
}

static int items(Walk *w, xmlNode *group, Frame *g, ContainerAudit *audit) {
    int left = 0;
    /* The Python walk gives a group a frame once it has children (the lean walk: every group, at once). */
    if (w->eager_groups || has_elements(group, &left)) {
        int done = frame_index(w, g);
        if (done != READ) return done;
    }
    CHILDREN(item, group) {
        if (!IS(item, "ItemData")) {
            if (!IS(item, "AuditRecord") || container_audit(w, item, audit) != READ) return LEFT;
            continue;
        }
        if (item->children != NULL && has_elements(item, &left)) {
            int done = item_audit(w, item);
            if (done != READ) return done;
        }
        RowAttributes found;
        row_attributes(item, &found, &left);
        if (left) return LEFT;
        char is_null = (char)is_yes(found.is_null);
        int done = add_row(w, found.oid, is_null ? NULL : found.value, is_null, found.tt != NULL ? found.tt : g->tt,
                           item, g->index);
        if (done != READ) return done;
    }
    return left ? LEFT : READ;
}

static int subject(Walk *w, xmlNode *node, const Frame *clinical) {
    int left = 0;
    if (!IS(node, "SubjectData")) return LEFT;
    const xmlChar *site = NULL;
    ContainerAudit audits[4] = {{.first_row = w->rows}};
    CHILDREN(child, node) { /* the last SiteRef is the subject's site, wherever it stands */
        if (IS(child, "SiteRef")) {
            if (has_elements(child, &left)) return LEFT;
            site = attribute(child, "LocationOID", &left);
        } else if (IS(child, "AuditRecord")) {
            if (container_audit(w, child, &audits[0]) != READ) return LEFT;
        } else if (!IS(child, "StudyEventData")) {
            return LEFT;
        }
    }
    if (left) return LEFT;
    Py_ssize_t first_frame = w->frames;
    Frame levels[4];
    int done = open_container(w, node, clinical, &levels[0], 0);
    /* Each level's AuditRecord is read among its children, then given to its rows without a nearer one. */
#define OPEN(level, element, parent)                                                   \
    audits[level] = (ContainerAudit){.first_row = w->rows};                            \
    done = open_container(w, element, &levels[parent], &levels[level], level)
#define AUDIT_OF(level, child)                                                         \
    if (IS(child, "AuditRecord")) {                                                    \
        if (container_audit(w, child, &audits[level]) != READ) return LEFT;            \
        continue;                                                                      \
    }
    CHILDREN(event, node) {
        if (done != READ) return done;
        if (!IS(event, "StudyEventData")) continue;
        OPEN(1, event, 0);
        CHILDREN(form, event) {
            if (done != READ) return done;
            AUDIT_OF(1, form);
            if (!IS(form, "FormData")) return LEFT;
            OPEN(2, form, 1);
            CHILDREN(group, form) {
                if (done != READ) return done;
                AUDIT_OF(2, group);
                if (!IS(group, "ItemGroupData")) return LEFT;
                OPEN(3, group, 2);
                if (done == READ) done = items(w, group, &levels[3], &audits[3]);
                if (done == READ) done = fill(w, &audits[3]);
            }
            if (done == READ) done = fill(w, &audits[2]);
        }
        if (done == READ) done = fill(w, &audits[1]);
    }
#undef OPEN
#undef AUDIT_OF
    if (done == READ) done = fill(w, &audits[0]);
    if (done != READ) return done;
    if (left) return LEFT;
    for (Py_ssize_t f = first_frame; f < w->frames; f++)
        if (text_add(&w->sites, site) < 0) return FAILED;
    return READ;
}

/* The audits as three Text columns of `rows` values (user, date-time, reason), or [] when no row has one
 * and no container had one. A row's audit is its own, else its nearest container's (`fills`, nearer first). */
static PyObject *audit_columns(const Walk *w) {
    Py_ssize_t own = w->audits.len / (Py_ssize_t)sizeof(Audit), fills = w->fills.len / (Py_ssize_t)sizeof(Fill);
    PyObject *columns = PyList_New(0);
    if (columns == NULL || (own == 0 && fills == 0) || w->rows == 0) return columns;
    const Audit **of_row = PyMem_RawCalloc((size_t)w->rows, sizeof *of_row);
    if (of_row == NULL) {
        Py_DECREF(columns);
        return PyErr_NoMemory();
    }
    const Audit *audits = (const Audit *)w->audits.data;
    for (Py_ssize_t a = 0; a < own; a++) of_row[audits[a].row] = &audits[a];
    for (const Fill *fill = (const Fill *)w->fills.data; fill < (const Fill *)w->fills.data + fills; fill++)
        for (Py_ssize_t row = fill->audit.row; row < fill->end; row++)
            if (of_row[row] == NULL) of_row[row] = &fill->audit;
    for (int part = 0; part < 3; part++) {
        Text column;
        memset(&column, 0, sizeof column);
        PyObject *object = NULL;
        int failed = 0;
        for (Py_ssize_t row = 0; row < w->rows && !failed; row++) {
            const Audit *audit = of_row[row];
            const xmlChar *value = audit == NULL ? NULL
                                   : part == 0   ? audit->user
                                   : part == 1   ? audit->stamp
                                                 : audit->reason;
            failed = text_add(&column, value) < 0;
        }
        object = failed ? PyErr_NoMemory() : text_object(&column);
        PyMem_RawFree(column.joined.data);
        PyMem_RawFree(column.nulls.data);
        if (object == NULL || PyList_Append(columns, object) < 0) {
            Py_XDECREF(object);
            Py_DECREF(columns);
            PyMem_RawFree(of_row);
            return NULL;
        }
        Py_DECREF(object);
    }
    PyMem_RawFree(of_row);
    return columns;
}

static void walk_free(Walk *w) {
    Text *texts[] = {&w->sites, &w->item_oid, &w->value, &w->tt};
    for (int k = 0; k < KEYS; k++) {
        PyMem_RawFree(w->keys[k].joined.data);
        PyMem_RawFree(w->keys[k].nulls.data);
    }
    for (int t = 0; t < 4; t++) {
        PyMem_RawFree(texts[t]->joined.data);
        PyMem_RawFree(texts[t]->nulls.data);
    }
    PyMem_RawFree(w->frame_index.data);
    PyMem_RawFree(w->line.data);
    PyMem_RawFree(w->audits.data);
    PyMem_RawFree(w->fills.data);
    PyMem_RawFree(w->is_null.data);
}

static PyObject *bytes_of(const Buf *b) { return PyBytes_FromStringAndSize(b->data ? b->data : "", b->len); }

static PyObject *walk_result(const Walk *w, Py_ssize_t next) {
    PyObject *keys = PyList_New(KEYS);
    if (keys == NULL) return NULL;
    for (int k = 0; k < KEYS; k++) {
        PyObject *column = text_object(&w->keys[k]);
        if (column == NULL) {
            Py_DECREF(keys);
            return NULL;
        }
        PyList_SET_ITEM(keys, k, column);
    }
    /* No TransactionType on any row (a lean part): None, for the caller's column of nulls. */
    PyObject *tt = w->any_tt ? text_object(&w->tt) : Py_NewRef(Py_None);
    return Py_BuildValue("(nnnNNNNNNNNN)", next, w->rows, w->frames, bytes_of(&w->frame_index), keys,
                         text_object(&w->sites), audit_columns(w), text_object(&w->item_oid), text_object(&w->value),
                         bytes_of(&w->is_null), tt, bytes_of(&w->line));
}

static const xmlChar *utf8_or_null(PyObject *object) {
    return object == Py_None ? NULL : (const xmlChar *)PyUnicode_AsUTF8(object);
}

static PyObject *walk_read(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *clinical, *namespace, *study_object, *version_object;
    long shift;
    Py_ssize_t batch_rows, start;
    int eager_groups;
    if (!PyArg_ParseTuple(args, "OOOOlnnp", &clinical, &namespace, &study_object, &version_object, &shift, &batch_rows,
                          &start, &eager_groups))
        return NULL;
    if (!PyObject_TypeCheck(clinical, element_type)) { /* a custom element class is one too */
        PyErr_SetString(PyExc_TypeError, "clinical: an lxml.etree._Element expected");
        return NULL;
    }
    xmlNode *node = ((struct LxmlElement *)clinical)->_c_node;
    if (node == NULL || batch_rows < 1) {
        PyErr_SetString(PyExc_ValueError, node == NULL ? "clinical: an element proxy without its node"
                                                       : "batch_rows: 1 or more expected");
        return NULL;
    }
    /* A DTD may give attributes default values, which lxml's get() reads and this walk does not; a line
     * shift beyond any file's would overflow. */
    if ((node->doc != NULL && (node->doc->intSubset != NULL || node->doc->extSubset != NULL))
        || shift < -(1L << 40) || shift > (1L << 40))
        return Py_NewRef(Py_None);
    Walk w;
    memset(&w, 0, sizeof w);
    w.shift = shift;
    w.eager_groups = eager_groups;
    w.namespace = utf8_or_null(namespace);
    Frame clinical_frame = {{utf8_or_null(study_object), utf8_or_null(version_object)}, NULL, -1};
    if (PyErr_Occurred()) return NULL;
    int left = 0, done = READ;
    Py_ssize_t at = 0;
    xmlNode *child = next_element(node->children, &left);
    for (; child != NULL && at < start; at++) child = next_element(child->next, &left);
    /* Without the GIL: nothing here touches a Python object. */
    Py_BEGIN_ALLOW_THREADS
    for (; child != NULL && done == READ && w.rows < batch_rows; at++) {
        done = subject(&w, child, &clinical_frame);
        child = next_element(child->next, &left);
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (done == FAILED) {
        PyErr_NoMemory(); /* the walk's only failure: a buffer not grown */
    } else if (done == READ && !left) {
        result = walk_result(&w, child == NULL ? -1 : at);
    } else {
        result = Py_NewRef(Py_None);
    }
    walk_free(&w);
    return result;
}

static PyMethodDef methods[] = {
    {"read", walk_read, METH_VARARGS,
     "read(clinical, namespace, study, version, shift, batch_rows, start, eager_groups): the columns of the "
     "subjects from child `start` on, cut after the subject that brings them to batch_rows rows; None for the "
     "Python walk to read them."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_odm_walk", NULL, -1, methods, NULL, NULL, NULL, NULL};

/* lxml.etree._Element, which `clinical` must be (or a subclass), and the lxml and libxml2 whose
 * structures this was compiled against: `odm_subjects` uses it with those only. */
PyMODINIT_FUNC PyInit__odm_walk(void) {
    PyObject *etree = PyImport_ImportModule("lxml.etree");
    if (etree == NULL) return NULL;
    PyObject *type = PyObject_GetAttrString(etree, "_Element");
    Py_DECREF(etree);
    if (type == NULL) return NULL;
    if (!PyType_Check(type)) {
        Py_DECREF(type);
        PyErr_SetString(PyExc_ImportError, "lxml.etree._Element is not a type");
        return NULL;
    }
    element_type = (PyTypeObject *)type; /* kept for the module's life */
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddStringConstant(m, "LXML_VERSION", LXML_VERSION_STRING) < 0
                      || PyModule_AddStringConstant(m, "LIBXML_VERSION", LIBXML_DOTTED_VERSION) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
