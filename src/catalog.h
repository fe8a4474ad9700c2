/*-------------------------------------------------------------------------
 *
 * catalog.h
 *	  Access to pg_eventbus's own tables and the backend-local topic cache.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_CATALOG_H
#define EB_CATALOG_H

#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"

#include "privileged.h"
#include "shmem.h"

typedef struct EbSegment
{
	int32		seg_no;
	Oid			relid;
	bool		activated;
	int			nstart;			/* 0 when the start positions are unknown */
	int64	   *start;			/* first position of each partition here */
	Oid			pk_index;		/* (partition, position); resolved lazily */
	Oid			idem_index;		/* (idempotency_key) partial index */
} EbSegment;

typedef struct EbTopic
{
	char		name[NAMEDATALEN];	/* hash key; must be first */
	bool		valid;
	uint64		db_version;		/* versions (shmem.c) it was loaded at: of */
	uint64		topic_version;	/* the database's topic list, of the topic */
	int32		topic_id;
	int64		uid;
	int32		partitions;
	Oid			relid;			/* the topic's parent table */
	Oid			owner;			/* the role that created the topic */
	int32		schema_version; /* current schema version, 0 if none */
	TransactionId schema_xmin;	/* xmin of its row (schema.c) */
	int			nsegments;
	EbSegment  *segments;		/* ascending seg_no */
	MemoryContext cxt;			/* holds segments */
	EbTopicShared *tshared;		/* cached shared slot, checked before use */
	EbPartShared **pshared;		/* cached partition slots, same */
	int			npshared;
} EbTopic;

extern Oid	eb_schema_oid(bool missing_ok);
extern Oid	eb_data_schema_oid(void);
extern Oid	eb_catalog_relid(const char *name);
extern bool eb_catalog_has(const char *name);
extern Oid	eb_extension_owner(void);
extern int64 *eb_int8_array_values(Datum d, int *n);
extern Jsonb *eb_topic_schema_scan(int32 topic_id, int32 version, Snapshot snap,
								   int32 *current, TransactionId *xmin);

extern EbTopicShared *eb_topic_shared(Oid dboid, int64 uid, bool create);
extern EbPartShared *eb_part_shared(Oid dboid, int64 uid, int32 partition, bool create);

extern EbTopic *eb_topic_get(const char *name, bool missing_ok);
extern EbTopic *eb_topic_get_text(text *name, bool missing_ok);
extern void eb_topic_cache_reset(void);
extern void eb_topic_cache_forget(const char *name);
extern void eb_catalog_init(void);

/* Transaction-scoped bookkeeping of topic DDL. */
extern void eb_catalog_changed(void);
extern void eb_catalog_topic_changed(const char *name);
extern void eb_catalog_forget_at_commit(int64 uid, int32 partitions);
extern void eb_catalog_forget_at_abort(int64 uid, int32 partitions);
extern void eb_catalog_xact_end(bool commit);
extern void eb_catalog_subxact_end(SubTransactionId mySubid,
								   SubTransactionId parentSubid, bool commit);
extern bool eb_catalog_changed_in_xact(void);

#endif							/* EB_CATALOG_H */
