/*-------------------------------------------------------------------------
 *
 * schema_compat.c
 *	  Compatibility between two versions of a topic's JSON Schema (see
 *	  schema_compat.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "schema_compat.h"

/* placeholder, replaced by the compatibility checker */
List *
eb_schema_incompatibilities(Jsonb *reader, Jsonb *writer)
{
	return NIL;
}
