/*-------------------------------------------------------------------------
 *
 * privileged.c
 *	  Everything pg_eventbus runs with the extension owner's rights.
 *
 * This is the only file that switches to the extension owner.  A role
 * calling pg_eventbus's functions may not read or write the extension's own
 * tables (eventbus.topic, eventbus.segment, eventbus.consumer_group, ...) or
 * create and drop the tables of topics in schema eventbus_data; the code
 * does that on its behalf, after checking the caller's rights itself, and
 * only through this module.  While switched, the extension owner must never
 * run code a user wrote: a function, an operator, a trigger, a rule, a row
 * security policy or an index expression of a user would then run with the
 * owner's rights (usually a superuser's).  So the owner may touch exactly:
 *
 *	1. Internal statements (eb_spi_exec, eb_spi_run between
 *	   eb_spi_begin(..., true) and eb_spi_end).  Each one is prepared, and
 *	   before it runs, its analyzed and rewritten query trees are checked:
 *	   no utility statement; every relation it refers to is a table in
 *	   schema eventbus owned by the extension owner, with no trigger other
 *	   than the internal ones of its foreign keys, no rule and no row
 *	   security; every function and operator is built in.  A statement that
 *	   fails the check is a bug (elog ERROR), never run.  The owner's own
 *	   tables can only be changed by the owner or a superuser, so their
 *	   defaults and constraints, which the executor evaluates, are the
 *	   extension's.
 *
 *	2. The tables of topics (schema eventbus_data), through the named
 *	   functions eb_priv_create_topic_tables, eb_priv_create_segment,
 *	   eb_priv_drop_segment and eb_priv_drop_topic_tables.  They build their
 *	   DDL only from validated topic names (quote_identifier) and numbers,
 *	   with search_path pinned, on tables the extension owner owns and no
 *	   other role can alter.  Creating a table and its two indexes evaluates
 *	   nothing of a user's: the tables are new and empty, the columns have
 *	   built-in types and default operator classes.  Privileges that the
 *	   owner's default privileges give other roles on a new table are
 *	   revoked at once.  Dropping evaluates nothing either; it never drops
 *	   objects of other roles that depend on a topic's table unless the
 *	   topic's owner asked for it, while a segment is dropped with the views
 *	   over it, so that no role can keep one forever.
 *
 * Everything else runs as the caller, including publishing: events are
 * written with the heap and index access methods into the segment's own
 * two indexes (publish.c), never as the owner.
 *
 * The switch adds SECURITY_RESTRICTED_OPERATION, as core does when it runs
 * maintenance as a table owner: nothing run here could change the session's
 * role or create temporary objects even if a check were missed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_class.h"
#include "executor/spi_priv.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "settings.h"
#include "catalog.h"
#include "compat.h"
#include "privileged.h"
#include "util.h"

typedef struct EbPrivCheck
{
	Oid			owner;			/* the extension owner */
	Oid			nsp;			/* schema eventbus */
	const char *sql;			/* for error messages */
} EbPrivCheck;

static void eb_priv_check_query(Query *query, EbPrivCheck *ctx);

/* ---------- switching ---------- */

/*
 * Connects to SPI and pins search_path to pg_catalog (then pg_temp, which
 * holds no functions or operators the lookup would find).  With as_owner,
 * also switches to the extension owner until eb_spi_end.  An error in
 * between restores the user at (sub)transaction abort.
 */
void
eb_spi_begin(EbSpi *s, bool as_owner)
{
	Oid			owner = InvalidOid;

	if (as_owner)
		owner = eb_extension_owner();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&s->save_userid, &s->save_sec_context);
	s->as_owner = as_owner;
	if (as_owner)
		SetUserIdAndSecContext(owner,
							   s->save_sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	s->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
eb_spi_end(EbSpi *s)
{
	AtEOXact_GUC(true, s->save_nestlevel);
	SetUserIdAndSecContext(s->save_userid, s->save_sec_context);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

/*
 * Statements run while the current user is the extension owner are
 * checked, however that came about (eb_spi_begin(..., true), a nested
 * eb_spi_begin(..., false), or the owner calling a function itself).
 */
static bool
eb_priv_as_owner(EbPrivCheck *ctx, const char *sql)
{
	ctx->owner = eb_extension_owner();
	ctx->nsp = eb_schema_oid(false);
	ctx->sql = sql;
	return GetUserId() == ctx->owner;
}

/* ---------- the check of internal statements ---------- */

static bool
eb_priv_not_builtin(Oid funcid, void *context)
{
	return funcid >= FirstNormalObjectId;
}

static void
eb_priv_check_relation(Oid relid, EbPrivCheck *ctx)
{
	/* parse analysis or plan revalidation locked it */
	Relation	rel = relation_open(relid, NoLock);
	Form_pg_class c = RelationGetForm(rel);
	int			i;

	if (c->relkind != RELKIND_RELATION || c->relnamespace != ctx->nsp ||
		c->relowner != ctx->owner)
		elog(ERROR, "internal statement refers to relation \"%s\", which is not a table of pg_eventbus: %s",
			 RelationGetRelationName(rel), ctx->sql);
	if (rel->rd_rules != NULL)
		elog(ERROR, "table \"%s\" of pg_eventbus has rules: %s",
			 RelationGetRelationName(rel), ctx->sql);
	if (c->relrowsecurity || c->relforcerowsecurity)
		elog(ERROR, "table \"%s\" of pg_eventbus has row security enabled: %s",
			 RelationGetRelationName(rel), ctx->sql);
	if (rel->trigdesc != NULL)
	{
		for (i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			if (!rel->trigdesc->triggers[i].tgisinternal)
				elog(ERROR, "table \"%s\" of pg_eventbus has trigger \"%s\": %s",
					 RelationGetRelationName(rel),
					 rel->trigdesc->triggers[i].tgname, ctx->sql);
		}
	}
	relation_close(rel, NoLock);
}

static void
eb_priv_check_sortgroup(List *clauses, EbPrivCheck *ctx)
{
	ListCell   *lc;

	foreach(lc, clauses)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);

		if (sgc->eqop >= FirstNormalObjectId || sgc->sortop >= FirstNormalObjectId)
			elog(ERROR, "internal statement sorts or groups with an operator that is not built in: %s",
				 ctx->sql);
	}
}

static bool
eb_priv_walker(Node *node, void *context)
{
	EbPrivCheck *ctx = (EbPrivCheck *) context;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		eb_priv_check_query((Query *) node, ctx);
		return false;
	}
	if (check_functions_in_node(node, eb_priv_not_builtin, NULL))
		elog(ERROR, "internal statement calls a function that is not built in: %s",
			 ctx->sql);
	return expression_tree_walker(node, eb_priv_walker, context);
}

static void
eb_priv_check_query(Query *query, EbPrivCheck *ctx)
{
	ListCell   *lc;

	if (query->commandType == CMD_UTILITY || query->utilityStmt != NULL)
		elog(ERROR, "internal statement is a utility statement: %s", ctx->sql);
	foreach(lc, query->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION)
			eb_priv_check_relation(rte->relid, ctx);
	}
	eb_priv_check_sortgroup(query->sortClause, ctx);
	eb_priv_check_sortgroup(query->groupClause, ctx);
	eb_priv_check_sortgroup(query->distinctClause, ctx);
	foreach(lc, query->windowClause)
	{
		WindowClause *wc = lfirst_node(WindowClause, lc);

		eb_priv_check_sortgroup(wc->partitionClause, ctx);
		eb_priv_check_sortgroup(wc->orderClause, ctx);
	}
	/* subqueries in the range table, CTEs and sublinks come back here */
	(void) query_tree_walker(query, eb_priv_walker, ctx, 0);
}

/*
 * Checks the one statement of a prepared plan, as it will run.  A fresh
 * plan is valid, and its locks are held since parse analysis.  A kept plan
 * may have been invalidated since it last ran, and its locks are not held in
 * a new transaction: getting its generic plan revalidates it (the query
 * trees become the ones the executor will use) and takes its locks, after
 * which no DDL can change it before it runs.
 *
 * An invalidation that changes nothing the statement depends on (autovacuum
 * updating a table's statistics, say) can still arrive while the plan is
 * built or checked and mark it invalid: the plan is then revalidated and
 * checked again, a few times, before giving up.
 */
#define EB_PRIV_CHECK_ATTEMPTS 5

static void
eb_priv_check_plan(SPIPlanPtr plan, bool fresh, EbPrivCheck *ctx)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);
	CachedPlanSource *source;
	ListCell   *lc;
	int			attempt;

	if (list_length(sources) != 1)
		elog(ERROR, "internal statement must be a single statement: %s",
			 ctx->sql ? ctx->sql : "(unknown)");
	source = linitial(sources);
	if (ctx->sql == NULL)
		ctx->sql = source->query_string;
	for (attempt = 0; attempt < EB_PRIV_CHECK_ATTEMPTS; attempt++)
	{
		if (!fresh || attempt > 0)
		{
			CachedPlan *cplan = SPI_plan_get_cached_plan(plan);

			if (cplan == NULL)
				elog(ERROR, "could not revalidate internal statement: %s", ctx->sql);
			ReleaseCachedPlan(cplan, plan->saved ? CurrentResourceOwner : NULL);
		}
		if (!source->is_valid)
			continue;
		foreach(lc, source->query_list)
			eb_priv_check_query(lfirst_node(Query, lc), ctx);
		if (source->is_valid)
			return;
	}
	elog(ERROR, "internal statement was invalidated while it was checked: %s",
		 ctx->sql);
}

/* ---------- running internal statements ---------- */

/*
 * Runs one statement.  Call between eb_spi_begin and eb_spi_end.
 */
int
eb_spi_exec(const char *sql, int nargs, Oid *argtypes, Datum *values,
			const char *nulls, bool read_only)
{
	EbPrivCheck ctx;
	SPIPlanPtr	plan;
	int			rc;

	if (!eb_priv_as_owner(&ctx, sql))
	{
		rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, read_only, 0);
		if (rc < 0)
			elog(ERROR, "internal query failed (%s): %s", SPI_result_code_string(rc), sql);
		return rc;
	}

	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare internal query (%s): %s",
			 SPI_result_code_string(SPI_result), sql);
	eb_priv_check_plan(plan, true, &ctx);
	rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "internal query failed (%s): %s", SPI_result_code_string(rc), sql);
	SPI_freeplan(plan);
	return rc;
}

/*
 * A prepared statement kept for the life of the backend in *cache.  Call
 * between eb_spi_begin and eb_spi_end; the plan cache revalidates it if the
 * tables change, and eb_spi_run checks it each time it runs as the owner.
 */
SPIPlanPtr
eb_spi_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare internal query (%s): %s",
				 SPI_result_code_string(SPI_result), sql);
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep internal query plan");
		*cache = plan;
	}
	return *cache;
}

int
eb_spi_run(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	EbPrivCheck ctx;
	int			rc;

	if (eb_priv_as_owner(&ctx, NULL))
		eb_priv_check_plan(plan, false, &ctx);
	rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "internal query failed: %s", SPI_result_code_string(rc));
	return rc;
}

/* ---------- tables of topics ---------- */

/* Runs DDL built here from validated names; as the owner, by eb_spi_begin. */
static void
eb_priv_ddl(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc < 0)
		elog(ERROR, "internal statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* eb_priv_ddl as a callback of eb_run_in_subxact */
static void
eb_priv_ddl_cb(void *sql)
{
	eb_priv_ddl((const char *) sql);
}

/*
 * The name of a new segment table: "<topic>$<n>", or, if another relation
 * already has that name (any role that may create topics may create
 * relations in eventbus_data), "<topic>$<n>_<k>" for the first free k.  A
 * name is only a convenience: segments are known by OID (eventbus.segment).
 */
static char *
eb_priv_segment_name(const char *topic, int32 seg_no)
{
	Oid			nsp = eb_data_schema_oid();
	char	   *name;
	int			k;

	if (seg_no < 1)
		elog(ERROR, "invalid segment number %d", seg_no);
	name = psprintf("%s$%d", topic, seg_no);
	for (k = 1; OidIsValid(get_relname_relid(name, nsp)); k++)
	{
		pfree(name);
		name = psprintf("%s$%d_%d", topic, seg_no, k);
	}
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("no free name for segment %d of topic \"%s\"", seg_no, topic),
				 errdetail("Relations in schema %s already have the names a segment table of this topic could take.",
						   EB_DATA_SCHEMA),
				 errhint("Drop or rename the relations named \"%s$%d...\" in schema %s that are not the topic's.",
						 topic, seg_no, EB_DATA_SCHEMA)));
	return name;
}

/*
 * Is relid a table of the extension owner in eventbus_data that inherits
 * from the topic's parent table parent?  Only the parent's owner can make
 * a table inherit from it, so this identifies the topic's segments.
 */
static bool
eb_priv_is_segment_of(Oid relid, Oid parent)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		ok;

	if (!HeapTupleIsValid(tup))
		return false;
	ok = ((Form_pg_class) GETSTRUCT(tup))->relnamespace == eb_data_schema_oid() &&
		((Form_pg_class) GETSTRUCT(tup))->relowner == eb_extension_owner() &&
		((Form_pg_class) GETSTRUCT(tup))->relkind == RELKIND_RELATION;
	ReleaseSysCache(tup);
	return ok && list_member_oid(find_inheritance_children(parent, NoLock), relid);
}

/*
 * Revokes every privilege on a table just created that default privileges
 * (ALTER DEFAULT PRIVILEGES of the extension owner) gave other roles: a
 * topic's privileges are only those its owner grants, and nobody may write
 * a segment's rows.  Run as the owner, between eb_spi_begin and eb_spi_end.
 */
static void
eb_priv_revoke_defaults(const char *qualified, Oid relid)
{
	HeapTuple	tup;
	Datum		d;
	bool		isnull;
	Oid			relowner;
	List	   *grantees = NIL;
	ListCell   *lc;

	CommandCounterIncrement();
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	relowner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	d = SysCacheGetAttr(RELOID, tup, Anum_pg_class_relacl, &isnull);
	if (!isnull)
	{
		Acl		   *acl = DatumGetAclPCopy(d);
		AclItem    *items = ACL_DAT(acl);
		int			i;

		for (i = 0; i < ACL_NUM(acl); i++)
			if (items[i].ai_grantee != relowner)
				grantees = list_append_unique_oid(grantees, items[i].ai_grantee);
	}
	ReleaseSysCache(tup);

	foreach(lc, grantees)
	{
		Oid			grantee = lfirst_oid(lc);

		eb_priv_ddl(psprintf("REVOKE ALL ON TABLE %s FROM %s CASCADE", qualified,
							 grantee == ACL_ID_PUBLIC ? "PUBLIC" :
							 quote_identifier(GetUserNameFromId(grantee, false))));
	}
}

/*
 * Creates the parent table eventbus_data."<topic>", owned by the extension
 * owner, and grants SELECT and INSERT on it, with grant option, to the
 * topic's owner: the topic's rights are the privileges on this table.
 * Returns its OID.
 */
Oid
eb_priv_create_topic_tables(const char *topic, Oid owner)
{
	EbSpi		spi;
	const char *qtopic;
	Oid			relid;

	eb_validate_name("topic", topic);
	qtopic = quote_identifier(topic);

	eb_spi_begin(&spi, true);
	eb_priv_ddl(psprintf("CREATE TABLE %s.%s ("
						 "partition pg_catalog.int4 NOT NULL, "
						 "position pg_catalog.int8 NOT NULL, "
						 "event_id pg_catalog.uuid NOT NULL, "
						 "created_at pg_catalog.timestamptz NOT NULL, "
						 "key pg_catalog.text, "
						 "value pg_catalog.jsonb NOT NULL, "
						 "headers pg_catalog.jsonb, "
						 "idempotency_key pg_catalog.text, "
						 "CONSTRAINT use_eventbus_publish CHECK (false) NO INHERIT"
						 ") USING heap",
						 EB_DATA_SCHEMA, qtopic));
	eb_priv_revoke_defaults(psprintf("%s.%s", EB_DATA_SCHEMA, qtopic),
							get_relname_relid(topic, eb_data_schema_oid()));
	eb_priv_ddl(psprintf("COMMENT ON TABLE %s.%s IS %s", EB_DATA_SCHEMA, qtopic,
						 quote_literal_cstr(psprintf("Events of topic %s, in segment tables that inherit from this one. Publish with eventbus.publish(); grant INSERT to publish and SELECT to read.", topic))));
	if (owner != GetUserId())
		eb_priv_ddl(psprintf("GRANT SELECT, INSERT ON TABLE %s.%s TO %s WITH GRANT OPTION",
							 EB_DATA_SCHEMA, qtopic,
							 quote_identifier(GetUserNameFromId(owner, false))));
	eb_spi_end(&spi);

	relid = get_relname_relid(topic, eb_data_schema_oid());
	if (!OidIsValid(relid))
		elog(ERROR, "table of topic \"%s\" was not created", topic);
	return relid;
}

/*
 * Creates segment table seg_no of a topic, inheriting from its parent, with
 * its primary key (partition, position) and its partial index on
 * idempotency_key; owned by the extension owner, its row type usable by no
 * other role.  Returns its OID.
 */
Oid
eb_priv_create_segment(const char *topic, int32 seg_no)
{
	EbSpi		spi;
	char	   *seg;
	const char *qseg;
	Oid			relid;

	eb_validate_name("topic", topic);
	seg = eb_priv_segment_name(topic, seg_no);
	qseg = quote_identifier(seg);

	eb_spi_begin(&spi, true);

	/*
	 * The primary key in the same statement where the catalog allows
	 * (compat.h): rotation is DDL on a clock.
	 */
	eb_priv_ddl(psprintf("CREATE TABLE %s.%s (%s) INHERITS (%s.%s) USING heap",
						 EB_DATA_SCHEMA, qseg,
						 EB_INHERITED_KEY_IN_CREATE_TABLE ? "PRIMARY KEY (partition, position)" : "",
						 EB_DATA_SCHEMA, quote_identifier(topic)));
	eb_priv_revoke_defaults(psprintf("%s.%s", EB_DATA_SCHEMA, qseg),
							get_relname_relid(seg, eb_data_schema_oid()));
	if (!EB_INHERITED_KEY_IN_CREATE_TABLE)
		eb_priv_ddl(psprintf("ALTER TABLE %s.%s ADD PRIMARY KEY (partition, position)",
							 EB_DATA_SCHEMA, qseg));
	eb_priv_ddl(psprintf("CREATE INDEX ON %s.%s (idempotency_key) WHERE idempotency_key IS NOT NULL",
						 EB_DATA_SCHEMA, qseg));
	/* no other role's function or column can depend on a segment's row type */
	eb_priv_ddl(psprintf("REVOKE USAGE ON TYPE %s.%s FROM PUBLIC",
						 EB_DATA_SCHEMA, qseg));
	eb_spi_end(&spi);

	relid = get_relname_relid(seg, eb_data_schema_oid());
	if (!OidIsValid(relid))
		elog(ERROR, "segment table \"%s\" was not created", seg);
	return relid;
}

/*
 * Drops segment table seg_no of a topic, which must be relation relid, a
 * segment of the topic's parent table parent.  Objects of other roles that
 * depend on it go with it: only a view can (creating one needs no
 * privilege, and the row type is not theirs to use), it could read nothing
 * (no role but a superuser may read a segment), and letting it stand would
 * let any role stop a topic's retention for good.  The server reports each
 * one dropped (NOTICE).
 */
void
eb_priv_drop_segment(const char *topic, int32 seg_no, Oid relid, Oid parent)
{
	EbSpi		spi;
	char	   *seg;

	eb_validate_name("topic", topic);
	seg = get_rel_name(relid);
	if (seg == NULL || !eb_priv_is_segment_of(relid, parent))
		elog(ERROR, "segment %d of topic \"%s\" is not relation %u", seg_no, topic, relid);

	eb_spi_begin(&spi, true);
	eb_priv_ddl(psprintf("DROP TABLE %s.%s CASCADE", EB_DATA_SCHEMA, quote_identifier(seg)));
	eb_spi_end(&spi);
}

/*
 * Drops a topic's parent table, which must be relation relid, and its
 * segment tables, in one statement.  Without cascade, objects of other
 * roles that depend on them (a view over the topic, a function taking its
 * row type) make it fail with an error naming them; with cascade they are
 * dropped too, as DROP TABLE ... CASCADE does for a table's owner.
 */
void
eb_priv_drop_topic_tables(const char *topic, Oid relid, bool cascade)
{
	EbSpi		spi;
	StringInfoData sql;
	List	   *children;
	ListCell   *lc;

	eb_validate_name("topic", topic);
	if (get_relname_relid(topic, eb_data_schema_oid()) != relid)
		elog(ERROR, "table of topic \"%s\" is not relation %u", topic, relid);

	/* the caller holds a lock that keeps segments from being added */
	initStringInfo(&sql);
	appendStringInfo(&sql, "DROP TABLE %s.%s", EB_DATA_SCHEMA, quote_identifier(topic));
	children = find_inheritance_children(relid, AccessExclusiveLock);
	foreach(lc, children)
	{
		Oid			child = lfirst_oid(lc);
		char	   *name = get_rel_name(child);

		if (name == NULL || !eb_priv_is_segment_of(child, relid))
			elog(ERROR, "table %u inheriting from topic \"%s\" is not a segment of it",
				 child, topic);
		appendStringInfo(&sql, ", %s.%s", EB_DATA_SCHEMA, quote_identifier(name));
	}
	if (cascade)
		appendStringInfoString(&sql, " CASCADE");

	eb_spi_begin(&spi, true);
	if (cascade)
		eb_priv_ddl(sql.data);
	else
	{
		/* an error naming the dependent objects, in the topic's words */
		ErrorData  *edata = eb_run_in_subxact(eb_priv_ddl_cb, sql.data);

		if (edata != NULL && edata->sqlerrcode != ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST)
			ReThrowError(edata);
		if (edata != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop topic \"%s\" because other objects depend on its tables",
							topic),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
					 errhint("Drop those objects first, or drop them with the topic: SELECT eventbus.drop_topic(%s, cascade => true);",
							 quote_literal_cstr(topic))));
	}
	eb_spi_end(&spi);
}
