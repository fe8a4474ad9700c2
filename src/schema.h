/*-------------------------------------------------------------------------
 *
 * schema.h
 *	  JSON Schemas of topics: compiled once per topic version, cached per
 *	  backend, and checked against each published event.  See schema.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SCHEMA_H
#define EB_SCHEMA_H

#include "utils/jsonb.h"
#include "utils/snapshot.h"

#include "catalog.h"

/* The header that tells which schema version an event was validated by. */
#define EB_SCHEMA_VERSION_HEADER	"eventbus-schema-version"

/* Limits on schemas (docs/schemas.md) */
#define EB_SCHEMA_MAX_SIZE			65536	/* bytes of the schema's jsonb */
#define EB_SCHEMA_MAX_DEPTH			32	/* nested schemas */
#define EB_SCHEMA_MAX_ENUM			1000	/* values of one enum */
#define EB_SCHEMA_MAX_PATTERN		1000	/* characters of one pattern */
#define EB_SCHEMA_MAX_REF_DEPTH		64	/* nested $ref expansions */
#define EB_SCHEMA_MAX_REF_EXPANSIONS 100000 /* $ref expansions per event */

typedef struct EbSchema EbSchema;

/* Compiles a schema into cxt; errors name the offending keyword. */
extern EbSchema *eb_schema_compile(Jsonb *schema, MemoryContext cxt);

/*
 * Validates an event's value against its topic's current schema, if any,
 * and adds the version header to *headers.  element >= 1 names the event's
 * place in a batch (vals[element]) in the error; 0 for a single publish.
 */
extern void eb_schema_validate_event(EbTopic *topic, Datum value, Jsonb **headers,
									 int element);

#endif							/* EB_SCHEMA_H */
