/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  What every module of pg_eventbus shares: the extension's fixed names,
 *	  the SQL versions it serves, its limits, the columns of a segment
 *	  table, and the server-wide settings (their values are in settings.c;
 *	  _PG_init in pg_eventbus.c defines them).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SETTINGS_H
#define EB_SETTINGS_H

#define EB_SCHEMA			"eventbus"
#define EB_DATA_SCHEMA		"eventbus_data"
#define EB_EXTENSION		"pg_eventbus"

/*
 * Versions of the extension's SQL objects this library works with: the
 * current one (default_version in pg_eventbus.control) first, then the
 * released ones it still serves, so that a database keeps working between
 * installing a new library and ALTER EXTENSION ... UPDATE.  Objects of any
 * other version get an error from every entry point instead of a misread
 * catalog.  Rules for serving an older version: install scripts of
 * released versions stay in sql/; a C function keeps every symbol they
 * name; one whose SQL signature grew checks PG_NARGS(); code that uses an
 * object added later looks it up and does without it when it is missing.
 */
#define EB_SQL_VERSION		"0.2.0"
#define EB_SQL_VERSIONS_SERVED	EB_SQL_VERSION, "0.1.0"

/*
 * Topic names: Kafka's legal characters.  The length leaves room for the
 * "eventbus." prefix of the LISTEN channel and for "$<segment>" in segment
 * table names within NAMEDATALEN.
 */
#define EB_TOPIC_NAME_MAX	54
#define EB_MAX_PARTITIONS_PER_TOPIC 1024

/* Columns of a segment table, in order (1-based attribute numbers). */
#define Anum_ev_partition		1
#define Anum_ev_position		2
#define Anum_ev_event_id		3
#define Anum_ev_created_at		4
#define Anum_ev_key				5
#define Anum_ev_value			6
#define Anum_ev_headers			7
#define Anum_ev_idempotency_key 8
#define Natts_ev				8
/* Their types (catalog/pg_type.h), in the same order. */
#define EB_EVENT_TYPE_OIDS \
	INT4OID, INT8OID, UUIDOID, TIMESTAMPTZOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID

/* GUC variables (settings.c) */
extern char *eb_database;
extern int	eb_max_topics;
extern int	eb_max_partitions;
extern int	eb_max_databases;
extern int	eb_max_topics_per_database;
extern int	eb_max_partitions_per_database;
extern int	eb_max_event_size;
extern int	eb_maintenance_naptime;

#endif							/* EB_SETTINGS_H */
