/*-------------------------------------------------------------------------
 *
 * relay_catalog.c
 *	  What the relay's SQL functions (relay_sql.c), its output plugin
 *	  (relay_output.c), its backfill (relay_backfill.c) and its Kafka
 *	  client share: the rule for Kafka topic names, the extension's own
 *	  tables found by name in its schema, the database's relay key and the
 *	  authentication code of outbox messages made with it, and the
 *	  allow-list of Kafka topics (eventbus.relay_allowed).
 *
 * The tables are read directly from the heap, with a snapshot the caller
 * gives or the catalog snapshot (while decoding: the historic snapshot),
 * and never by SQL: no user code runs here, and nothing here throws on a
 * table's content.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "settings.h"
#include "relay.h"

/* Kafka's rule: 1 to 249 of [a-zA-Z0-9._-], not "." or "..". */
bool
eb_kafka_topic_name_valid(const char *name)
{
	size_t		len = strlen(name);
	size_t		i;

	if (len < 1 || len > EB_KAFKA_TOPIC_MAX ||
		strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A table in the extension's schema, by name; InvalidOid if none. */
Oid
eb_relay_catalog_relid(const char *name)
{
	Oid			nsp = get_namespace_oid(EB_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

/*
 * Reads the database's relay key from eventbus.relay_key, directly from the
 * heap (the caller needs no right on the table) with the catalog snapshot
 * (while decoding: the historic snapshot).  False if there is none.
 */
bool
eb_relay_key_read(uint8 *key)
{
	Oid			relid = eb_relay_catalog_relid("relay_key");
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (!found && (tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);
		bytea	   *b;

		if (isnull || TupleDescAttr(RelationGetDescr(rel), 0)->atttypid != BYTEAOID)
			continue;
		b = DatumGetByteaPP(d);
		if (VARSIZE_ANY_EXHDR(b) != EB_RELAY_KEY_LEN)
			continue;
		memcpy(key, VARDATA_ANY(b), EB_RELAY_KEY_LEN);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The authentication code of an outbox message (msg, len bytes, with room
 * for the code after the format byte): HMAC-SHA256 of the format byte and
 * everything after the code.  False if it cannot be computed.
 */
bool
eb_outbox_mac(const uint8 *key, const char *msg, size_t len, uint8 *mac)
{
	pg_hmac_ctx *ctx;
	bool		ok;

	if (len < 1 + EB_OUTBOX_MAC_LEN)
		return false;
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		return false;
	ok = pg_hmac_init(ctx, key, EB_RELAY_KEY_LEN) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) msg, 1) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) msg + 1 + EB_OUTBOX_MAC_LEN,
					   len - 1 - EB_OUTBOX_MAC_LEN) == 0 &&
		pg_hmac_final(ctx, mac, EB_OUTBOX_MAC_LEN) == 0;
	pg_hmac_free(ctx);
	return ok;
}

/*
 * Does an allow-list entry (an exact Kafka topic name, or a prefix ending
 * in '*') cover this Kafka topic?
 */
static bool
eb_relay_pattern_matches(const char *pattern, size_t patlen, const char *kafka_topic)
{
	if (patlen > 0 && pattern[patlen - 1] == '*')
		return strncmp(pattern, kafka_topic, patlen - 1) == 0;
	return strlen(kafka_topic) == patlen && memcmp(pattern, kafka_topic, patlen) == 0;
}

/*
 * May this role relay into (or send outbox messages to) this Kafka topic?
 * Superusers may; any other role when it has the privileges of a role with
 * a matching row of eventbus.relay_allowed.  The table is read directly
 * with the given snapshot, or NULL for the catalog snapshot (while
 * decoding: the historic snapshot, i.e. the allow-list as of the decoded
 * transaction).  Never throws on the table's content.
 */
bool
eb_relay_allowed(Oid roleid, const char *kafka_topic, Snapshot snapshot)
{
	Oid			relid;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		allowed = false;
	TupleDesc	desc;

	if (superuser_arg(roleid))
		return true;
	relid = eb_relay_catalog_relid("relay_allowed");
	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	if (desc->natts >= 2 &&
		TupleDescAttr(desc, 0)->atttypid == REGROLEOID &&
		TupleDescAttr(desc, 1)->atttypid == TEXTOID)
	{
		scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
		while (!allowed && (tup = systable_getnext(scan)) != NULL)
		{
			bool		n1,
						n2;
			Datum		role = heap_getattr(tup, 1, desc, &n1);
			Datum		pattern = heap_getattr(tup, 2, desc, &n2);
			text	   *pat;

			if (n1 || n2)
				continue;
			pat = DatumGetTextPP(pattern);
			if (eb_relay_pattern_matches(VARDATA_ANY(pat), VARSIZE_ANY_EXHDR(pat), kafka_topic) &&
				has_privs_of_role(roleid, DatumGetObjectId(role)))
				allowed = true;
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
	return allowed;
}

static int
eb_cstring_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/*
 * The Kafka topics that topics are relayed to (eventbus.topic.relay_to),
 * each once, read directly from the heap with the catalog snapshot (outside
 * decoding: the latest committed state); palloc'd in the current memory
 * context.  The table's OID goes to *relid (InvalidOid: no such table).
 * Call in a transaction.
 */
List *
eb_relay_catalog_kafka_topics(Oid *relid)
{
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	att_relay;
	List	   *names = NIL;
	List	   *unique = NIL;
	ListCell   *lc;
	const char *prev = NULL;

	*relid = eb_relay_catalog_relid("topic");
	if (!OidIsValid(*relid))
		return NIL;
	att_relay = get_attnum(*relid, "relay_to");
	if (att_relay == InvalidAttrNumber || get_atttype(*relid, att_relay) != TEXTOID)
		return NIL;
	rel = table_open(*relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, att_relay, RelationGetDescr(rel), &isnull);
		char	   *name;

		if (isnull)
			continue;
		name = TextDatumGetCString(d);
		if (eb_kafka_topic_name_valid(name))
			names = lappend(names, name);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	list_sort(names, eb_cstring_cmp);
	foreach(lc, names)
	{
		if (prev == NULL || strcmp(prev, lfirst(lc)) != 0)
			unique = lappend(unique, lfirst(lc));
		prev = lfirst(lc);
	}
	list_free(names);
	return unique;
}
