/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  The Kafka relay: the worker (relay_worker.c, with relay_state.c,
 *	  relay_kafka.c and relay_ack.c, which share relay_int.h), its slot
 *	  (relay_slot.c), its output plugin (relay_output.c), the backfill
 *	  (relay_backfill.c), the SQL side (relay_sql.c) and what they all
 *	  read of the extension's tables (relay_catalog.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_RELAY_H
#define EB_RELAY_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"
#include "executor/tuptable.h"
#include "nodes/pg_list.h"
#include "utils/snapshot.h"

#include "shmem.h"

/* Prefix of the transactional logical messages that carry outbox messages. */
#define EB_OUTBOX_PREFIX "pg_eventbus.outbox"
#define EB_OUTBOX_FORMAT 2
/* HMAC-SHA256: the relay key's and the authentication code's lengths */
#define EB_RELAY_KEY_LEN 32
#define EB_OUTBOX_MAC_LEN 32

/* Kafka's legal topic names */
#define EB_KAFKA_TOPIC_MAX 249

/* Longest ce_source of a topic relayed as CloudEvents, in bytes */
#define EB_CE_SOURCE_MAX 1024

/*
 * Called when Kafka acknowledged a message, or refused it for good (then
 * the topic's on_error policy applies, as for any message), with the
 * message's on_ack_arg.  Served by rd_kafka_poll(): no table access.
 */
typedef void (*EbRelayAckFn) (void *arg);

/* A message for Kafka, as the output plugin hands it to the worker. */
typedef struct EbRelayMessage
{
	const char *kafka_topic;
	int32		topic_id;		/* eventbus.topic.topic_id, -1 for outbox messages */
	const char *topic;			/* the local topic, NULL for outbox messages */
	int32		partition;		/* local partition, -1 for outbox messages */
	int32		local_partitions;	/* partition count of the local topic */
	const char *key;			/* NULL: no key */
	int			keylen;
	const char *value;
	int			valuelen;
	int64		timestamp_ms;
	int			nheaders;
	const char **header_names;
	const char **header_values; /* NULL entries: header without value */
	EbPartShared *part;			/* for the relayed position, may be NULL */
	int64		uid;			/* the topic's, that part was looked up for */
	int64		position;
	const char *event_id;		/* as text */
	XLogRecPtr	lsn;			/* commit LSN of its transaction */
	bool		outbox;
	EbRelayAckFn on_ack;		/* NULL: none (decoded messages) */
	void	   *on_ack_arg;
} EbRelayMessage;

/*
 * How the output plugin hands its messages to the worker: the worker puts
 * one of these in its decoding context's output_writer_private, and the
 * plugin calls nothing else of the worker.  begin and commit bracket every
 * decoded transaction (in commit order); send is called between them for
 * each message; skips says whether an event's position is one a backfill
 * sends from the topic's tables (its seam), which the plugin then leaves
 * out.  magic tells the worker's writer from any other caller's.
 */
#define EB_RELAY_WRITER_MAGIC 0x45427277	/* "EBrw" */

typedef struct EbRelayWriter
{
	uint32		magic;
	void		(*begin) (XLogRecPtr commit_lsn);
	void		(*commit) (XLogRecPtr end_lsn, TimestampTz commit_time);
	void		(*send) (EbRelayMessage *m);
	bool		(*skips) (int32 topic_id, int32 partition, int64 position);
} EbRelayWriter;

/* eventbus.relay_delivery */
typedef enum EbRelayDelivery
{
	EB_RELAY_EXACTLY_ONCE,
	EB_RELAY_AT_LEAST_ONCE
} EbRelayDelivery;

/*
 * The default delivery mode: exactly-once, which bench/relay.sh measured
 * at 0.72 (100-byte events) and 0.77 (1 KB) of at-least-once's throughput
 * (docs/benchmarks.md; the rule was at least 0.7), and which passes every
 * relay test (CI also runs them under at-least-once).  Change here and in
 * docs/relay.md's settings table together.
 */
#define EB_RELAY_DELIVERY_DEFAULT EB_RELAY_EXACTLY_ONCE
#define EB_RELAY_PROGRESS_TOPIC_DEFAULT "__eventbus_relay_progress"

/* A relayed topic as the output plugin resolved it (relay_output.c). */
typedef struct EbRelayTarget EbRelayTarget;

/* Where a backfill hands its messages (relay_backfill.c). */
typedef struct EbBackfillSink
{
	XLogRecPtr	read_lsn;		/* the WAL read position of the decoding */
} EbBackfillSink;

/* GUCs */
extern char *eb_kafka_brokers;
extern char *eb_kafka_properties;
extern char *eb_kafka_properties_file;
extern int	eb_relay_max_in_flight;
extern int	eb_relay_backfill_batch;
extern int	eb_relay_delivery;
extern char *eb_relay_transactional_id;
extern char *eb_relay_progress_topic;
extern int	eb_relay_commit_interval;

/* relay_worker.c */
extern PGDLLEXPORT void eb_relay_main(Datum arg);

/* relay_state.c */
extern void eb_relay_wake(void);
extern void eb_relay_slot_name(Oid dboid, char *buf);

/* relay_slot.c */
extern bool eb_relay_slot_ensure(const char *slot, char *why, size_t whylen);
extern bool eb_relay_slot_drop_unused(const char *why);
extern bool eb_relay_extension_installed(void);
extern bool eb_relay_slot_standbys_confirmed(XLogRecPtr lsn);
extern void eb_relay_slot_init(void);

/* relay_output.c */
extern void eb_relay_output_reset(void);
extern EbRelayTarget *eb_relay_stored_target(int32 topic_id, char *why, size_t whylen);
extern EbPartShared *eb_relay_target_part(EbRelayTarget *t, int32 partition,
										  int64 *uid);
extern bool eb_relay_stored_message(EbRelayTarget *t, TupleTableSlot *slot,
									EbRelayMessage *m);

/* relay_backfill.c */
typedef enum EbBackfillStart
{
	EB_START_NOW,
	EB_START_EARLIEST,
	EB_START_TIME,
	EB_START_LAST_ACKNOWLEDGED
} EbBackfillStart;

struct EbTopic;
extern EbBackfillStart eb_backfill_parse_start(const char *start_at, TimestampTz *ts);
extern void eb_backfill_lock_publishers(struct EbTopic *topic);
extern bool eb_backfill_begin(struct EbTopic *topic, EbBackfillStart start, TimestampTz ts,
							  const char *start_at);
extern void eb_backfill_end(struct EbTopic *topic);
extern void eb_backfill_session_start(void);
extern int	eb_backfill_fill(EbBackfillSink *sink, int max_messages);
extern bool eb_backfill_wal_skips(int32 topic_id, int32 partition, int64 position);
extern void eb_backfill_progress_note(StringInfo buf);
extern void eb_backfill_recover(const char *record);

/* relay_catalog.c */
extern bool eb_kafka_topic_name_valid(const char *name);
extern Oid	eb_relay_catalog_relid(const char *name);
extern bool eb_relay_key_read(uint8 *key);
extern bool eb_relay_allowed(Oid roleid, const char *kafka_topic, Snapshot snapshot);
extern bool eb_outbox_mac(const uint8 *key, const char *msg, size_t len, uint8 *mac);
extern List *eb_relay_catalog_kafka_topics(Oid *relid);

/* relay_sql.c */
extern uint64 eb_outbox_xact_end(bool commit);
extern void eb_outbox_count_committed(uint64 count);
extern void eb_outbox_subxact_end(int level, bool commit);

#endif							/* EB_RELAY_H */
