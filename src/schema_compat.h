/*-------------------------------------------------------------------------
 *
 * schema_compat.h
 *	  Compatibility between two versions of a topic's JSON Schema.
 *
 * eb_schema_incompatibilities(reader, writer) answers: does every JSON value
 * that is valid under `writer` also validate under `reader`?  It returns NIL
 * when it can show that it does, otherwise a list of palloc'd C strings, one
 * reason each, phrased for an error detail (for example "property \"qty\"
 * became required", "type of $.items changed from integer to string").  A
 * difference it cannot decide is a reason too ("... cannot be shown
 * compatible"): it never answers compatible by guessing.
 *
 * Compatibility modes in terms of this question (new = the version being
 * registered, old = a previous version):
 *   backward  reader = new, writer = old   (new consumers read old events)
 *   forward   reader = old, writer = new   (old consumers read new events)
 *   full      both
 *   *_transitive: against every previous version, not only the latest.
 *
 * Both schemas must already have passed registration's checks (only the
 * supported keywords, bounded size and depth).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SCHEMA_COMPAT_H
#define EB_SCHEMA_COMPAT_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

extern List *eb_schema_incompatibilities(Jsonb *reader, Jsonb *writer);

/*
 * The same answer, with the reasons phrased for the direction of the check:
 * eb_schema_incompatibilities() phrases them as changes from the writer to
 * the reader (backward: old to new).  For the forward check (reader = old,
 * writer = new) pass reader_is_old = true, and the reasons still read as
 * changes from the old version to the new ("property \"qty\" is no longer
 * required", "enum value \"x\" was added").
 */
extern List *eb_schema_incompatibilities_phrased(Jsonb *reader, Jsonb *writer,
												 bool reader_is_old);

#endif							/* EB_SCHEMA_COMPAT_H */
