/*-------------------------------------------------------------------------
 *
 * relay_topics.c
 *	  What the brokers say of the Kafka topics the relay sends to, and how
 *	  each relayed topic's partitions map to its Kafka topic's.
 *
 * Metadata is asked for by the worker only, outside decoding: at a
 * session's start for every Kafka topic that topics are relayed to (and,
 * under exactly-once, the progress topic), between WAL records when
 * eventbus.topic changed (relay_topic(), stop_relay(), more partitions),
 * and now and then to learn again of topics that could not be used.  The
 * answers are kept for the session.  The output plugin, through
 * eb_relay_partition(), only reads them: deciding a topic's mapping never
 * waits for the network inside decoding.
 *
 * When decoding meets an event for a Kafka topic the brokers have not
 * described (they did not answer, or answered with an error that may
 * pass), nothing of it is sent: the session ends at that transaction
 * (nothing past it is confirmed), the next session's start waits outside
 * decoding until the brokers describe the topic, and relaying goes on from
 * the confirmed position.  A topic's mapping therefore never depends on an
 * outage, and an event is never sent by key in place of its partition.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "privileged.h"
#include "relay_int.h"

/* a refusal is asked about again after this long ... */
#define EB_TOPIC_RETRY_MS 10000
/* ... and trusted this long: then the topic counts as not described */
#define EB_TOPIC_REFUSAL_VALID_MS 30000
/* ... and the partition counts of every relayed Kafka topic after */
#define EB_TOPIC_REFRESH_MS 60000
/* how long asking between WAL records may take, at most */
#define EB_TOPIC_ASK_MS 500
/* how long one question takes at most while a session's start waits */
#define EB_TOPIC_WAIT_ASK_MS 2000
/* how often Kafka topics with messages in flight are checked for stuck ones */
#define EB_TOPIC_STUCK_CHECK_MS 5000
/*
 * how long a Kafka topic first named by a change of eventbus.topic may
 * answer "not yet" (no leader: brokers that create topics on demand are
 * creating it) before decoding goes on, and how often it is asked meanwhile
 */
#define EB_TOPIC_NEW_WAIT_MS 3000
#define EB_TOPIC_NEW_ASK_EVERY_MS 100
/*
 * After eventbus.topic changed, a Kafka topic described less than this
 * ago is not asked about again: a burst of changes (topics created one per
 * transaction, or their WAL decoded again after a restart) asks once
 */
#define EB_TOPIC_ANSWER_FRESH_MS 1000

/* What the brokers last said of a Kafka topic, in this session. */
typedef struct EbKafkaTopic
{
	char		name[EB_KAFKA_TOPIC_MAX + 1];	/* hash key */
	TimestampTz fetched_at;		/* when the brokers last answered for it */
	TimestampTz asked_at;		/* when they were last asked, answered or not */
	int32		partitions;		/* > 0: its partition count */
	rd_kafka_resp_err_t err;	/* else why not (NO_ERROR: no answer yet) */
	int64		in_flight;		/* messages sent, not answered yet */
	uint64		answers;		/* delivery reports received */
	uint64		answers_seen;	/* ... at the last check for stuck messages */
} EbKafkaTopic;

/*
 * How a relayed topic's partitions map to its Kafka topic's, decided once
 * (eventbus.relay_partitioning) and kept: by_partition, partition p goes to
 * Kafka partition p; otherwise the key decides (Kafka's partitioner).
 */
typedef struct EbMappingKey
{
	int32		topic_id;
	char		kafka_topic[EB_KAFKA_TOPIC_MAX + 1];
} EbMappingKey;

typedef struct EbMapping
{
	EbMappingKey key;			/* hash key */
	int32		local_partitions;
	int32		kafka_partitions;
	bool		by_partition;
	bool		persisted;		/* in eventbus.relay_partitioning */
} EbMapping;

/*
 * Topic handles the producer holds for the session, so that it keeps their
 * metadata from the first request on (see eb_kafka_hold_topic).
 */
static rd_kafka_topic_t **held_topics = NULL;
static int	held_topics_n = 0;
static int	held_topics_max = 0;

static HTAB *kafka_topics = NULL;	/* EbKafkaTopic, for the session */
static HTAB *mappings = NULL;	/* lives as long as the process */
static EbMapping *last_mapping = NULL;	/* the last one used, an entry of mappings */
static int	mappings_unpersisted = 0;
static EbKafkaTopic *last_entry = NULL; /* the last one looked up while sending */

/*
 * Kafka topics decoding needed and found undescribed: the next session's
 * start waits for them.  In TopMemoryContext.
 */
static List *wanted_topics = NIL;

/* eventbus.topic changed since the relayed Kafka topics were last read */
static bool relayed_changed = true;
static Oid	topic_relid = InvalidOid;
static bool callback_registered = false;
static bool retry_pending = false;	/* a relayed Kafka topic is not described */
static TimestampTz next_ask_at = 0; /* ... or the brokers did not answer: ask again then */
static TimestampTz refreshed_at = 0;	/* all relayed Kafka topics were asked about */
static TimestampTz stuck_checked_at = 0;

/* ---------- what the brokers say ---------- */

/*
 * What the brokers' metadata says of one topic: its partition count, -2
 * with *topic_err set when the topic cannot be used, -1 when it can be
 * soon (no leader yet), 0 when the metadata does not list it.
 */
static int
eb_metadata_topic(const struct rd_kafka_metadata *md, const char *topic,
				  rd_kafka_resp_err_t *topic_err)
{
	*topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	for (int i = 0; i < md->topic_cnt; i++)
	{
		const struct rd_kafka_metadata_topic *t = &md->topics[i];

		if (strcmp(t->topic, topic) != 0)
			continue;
		if (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0)
			return t->partition_cnt;
		*topic_err = t->err;
		if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
			t->err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
			return -2;
		return -1;
	}
	return 0;
}

/*
 * Makes the producer hold a handle on a Kafka topic for the session; true
 * if it did not hold one yet.  The producer learns a topic's partitions and
 * leaders from a metadata answer only for the topics it has a handle on
 * when the answer arrives: a topic first named by rd_kafka_producev() can
 * wait for librdkafka's periodic topic scan (every second) before its
 * messages leave.  So a topic the brokers listed gets a handle, then one
 * more metadata request.  Only topics the brokers listed: librdkafka asks
 * again and again for a topic it has a handle on (see eb_topic_ask_by_name
 * on asking for unknown topics).
 */
static bool
eb_kafka_hold_topic(const char *topic)
{
	rd_kafka_topic_t *rkt;

	if (eb_producer == NULL || topic == NULL || topic[0] == '\0')
		return false;
	for (int i = 0; i < held_topics_n; i++)
		if (strcmp(rd_kafka_topic_name(held_topics[i]), topic) == 0)
			return false;
	rkt = rd_kafka_topic_new(eb_producer, topic, NULL);
	if (rkt == NULL)
		return false;
	if (held_topics_n == held_topics_max)
	{
		held_topics_max = Max(held_topics_max * 2, 16);
		held_topics = held_topics == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(rd_kafka_topic_t *) * held_topics_max) :
			repalloc(held_topics, sizeof(rd_kafka_topic_t *) * held_topics_max);
	}
	held_topics[held_topics_n++] = rkt;
	return true;
}

/* Lets go of the topic handles (before the producer is destroyed). */
void
eb_kafka_topics_release(void)
{
	for (int i = 0; i < held_topics_n; i++)
		rd_kafka_topic_destroy(held_topics[i]);
	held_topics_n = 0;
}

static EbKafkaTopic *
eb_topic_entry(const char *name, bool create)
{
	char		key[EB_KAFKA_TOPIC_MAX + 1];
	EbKafkaTopic *e;
	bool		found;

	if (kafka_topics == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(EbKafkaTopic);
		ctl.hcxt = TopMemoryContext;
		kafka_topics = hash_create("pg_eventbus Kafka topics", 32, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, name, sizeof(key));
	if (!create)
		return hash_search(kafka_topics, key, HASH_FIND, NULL);
	e = hash_search(kafka_topics, key, HASH_ENTER, &found);
	if (!found)
	{
		/* nothing known yet: every field after the name is zero */
		memset((char *) e + offsetof(EbKafkaTopic, fetched_at), 0,
			   sizeof(EbKafkaTopic) - offsetof(EbKafkaTopic, fetched_at));
		Assert(e->err == RD_KAFKA_RESP_ERR_NO_ERROR);
	}
	return e;
}

/*
 * A topic the cluster's metadata does not list, asked for by name, which
 * lets brokers that create topics on demand create it.  Only then: asking
 * for one topic the client has not seen yet, when the brokers answer with
 * an error for it, crashes a broker thread of librdkafka 2.8 (Debian
 * trixie).  Same answers as eb_metadata_topic; -1 also when the brokers
 * did not answer.
 */
static int
eb_topic_ask_by_name(const char *topic, long timeout_ms, rd_kafka_resp_err_t *topic_err)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(eb_producer, topic, NULL);
	const struct rd_kafka_metadata *md;
	int			partitions = -1;

	*topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (rkt == NULL)
		return -1;
	if (rd_kafka_metadata(eb_producer, 0, rkt, &md, (int) timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		partitions = eb_metadata_topic(md, topic, topic_err);
		if (partitions == 0)
			partitions = -1;
		rd_kafka_metadata_destroy(md);
	}
	rd_kafka_topic_destroy(rkt);
	return partitions;
}

/*
 * Asks the brokers about these Kafka topics (one request for the whole
 * cluster's metadata, then by name for those it does not list) and keeps
 * the answers for the session; the topics the brokers list get a handle
 * (eb_kafka_hold_topic).  False if the brokers did not answer.  A topic
 * that cannot be used yet (an error that may pass) is said in the status.
 */
static bool
eb_topics_ask(List *names, long timeout_ms)
{
	const struct rd_kafka_metadata *md;
	ListCell   *lc;
	bool		held = false;
	TimestampTz now;

	/* the output plugin never waits for the network */
	Assert(!eb_decoding);
	if (eb_producer == NULL || names == NIL)
		return eb_producer != NULL;
	now = GetCurrentTimestamp();
	foreach(lc, names)
		eb_topic_entry(lfirst(lc), true)->asked_at = now;
	ereport(DEBUG1,
			(errmsg_internal("pg_eventbus relay: asking the Kafka brokers about %d topic(s), \"%s\" first",
							 list_length(names), (const char *) linitial(names))));
	if (rd_kafka_metadata(eb_producer, 1, NULL, &md, (int) timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	now = GetCurrentTimestamp();
	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		rd_kafka_resp_err_t err;
		int			partitions = eb_metadata_topic(md, name, &err);
		EbKafkaTopic *e;

		if (partitions == 0)
			partitions = eb_topic_ask_by_name(name, timeout_ms, &err);
		e = eb_topic_entry(name, true);
		e->fetched_at = now;
		if (partitions > 0 || eb_kafka_error_is_permanent(err) || e->partitions == 0)
		{
			e->partitions = Max(partitions, 0);
			e->err = partitions > 0 ? RD_KAFKA_RESP_ERR_NO_ERROR : err;
		}
		/* else an answer that may pass (no leader yet): the last count stays */
		if (partitions > 0)
			held |= eb_kafka_hold_topic(name);
		else if (err != RD_KAFKA_RESP_ERR_NO_ERROR && !eb_kafka_error_is_permanent(err))
		{
			char		msgbuf[EB_RELAY_ERROR_LEN];

			snprintf(msgbuf, sizeof(msgbuf),
					 "Kafka topic \"%s\" cannot be used yet (%s): its events wait",
					 name, rd_kafka_err2str(err));
			eb_relay_error_keyed(msgbuf, name);
		}
	}
	rd_kafka_metadata_destroy(md);

	/* one more answer, for the new handles */
	if (held && rd_kafka_metadata(eb_producer, 1, NULL, &md, (int) timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	return true;
}

/*
 * Did the brokers refuse the Kafka topic for good when last asked?  An
 * answer kept for a topic that could not be asked again since (brokers
 * down) is not trusted after EB_TOPIC_REFUSAL_VALID_MS: the topic then
 * counts as not described, so that nothing is refused on an old answer.
 */
static bool
eb_topic_refusal_recorded(const EbKafkaTopic *e)
{
	return e != NULL && e->partitions == 0 && e->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
		eb_kafka_error_is_permanent(e->err);
}

static bool
eb_topic_refused(const EbKafkaTopic *e)
{
	return eb_topic_refusal_recorded(e) &&
		!TimestampDifferenceExceeds(e->fetched_at, GetCurrentTimestamp(),
									EB_TOPIC_REFUSAL_VALID_MS);
}

/* Did the brokers give the topic's count less than EB_TOPIC_ANSWER_FRESH_MS ago? */
static bool
eb_topic_answer_fresh(const EbKafkaTopic *e, TimestampTz now)
{
	return e != NULL && e->partitions > 0 &&
		!TimestampDifferenceExceeds(e->fetched_at, now, EB_TOPIC_ANSWER_FRESH_MS);
}

/* Has the session an answer that decides a mapping (a count, or a refusal)? */
static bool
eb_topic_described(const EbKafkaTopic *e)
{
	return e != NULL && (e->partitions > 0 || eb_topic_refused(e));
}

/* Relcache invalidation: eventbus.topic may have changed.  No catalog access. */
static void
eb_topics_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == topic_relid || !OidIsValid(topic_relid))
		relayed_changed = true;
}

/*
 * The Kafka topics that topics are relayed to now, in the current memory
 * context, read in a transaction of its own.
 */
static List *
eb_topics_relayed(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(eb_topics_invalidate, (Datum) 0);
		callback_registered = true;
	}
	relayed_changed = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* read straight into the caller's context: the list outlives the transaction */
	MemoryContextSwitchTo(cxt);
	names = eb_relay_catalog_kafka_topics(&topic_relid);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return names;
}

static bool
eb_topics_list_has(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/* ---------- the worker's side: asking, outside decoding ---------- */

/*
 * A new session forgets what the brokers said (not the topics decoding
 * waits for) and reloads the decided mappings.
 */
void
eb_kafka_topics_session_reset(void)
{
	HTAB	   *old = kafka_topics;

	/*
	 * Refusals are kept (asked again on schedule): a Kafka topic that only
	 * outbox messages go to is asked about only after one was refused.
	 */
	kafka_topics = NULL;
	last_entry = NULL;
	stuck_checked_at = 0;
	if (old != NULL)
	{
		HASH_SEQ_STATUS seq;
		EbKafkaTopic *e;

		hash_seq_init(&seq, old);
		while ((e = hash_seq_search(&seq)) != NULL)
		{
			if (eb_topic_refused(e))
			{
				EbKafkaTopic *n = eb_topic_entry(e->name, true);

				n->fetched_at = e->fetched_at;
				n->asked_at = e->asked_at;
				n->err = e->err;
			}
		}
		hash_destroy(old);
	}
	relayed_changed = true;
	retry_pending = false;
	next_ask_at = 0;
	if (mappings != NULL)
		hash_destroy(mappings);
	mappings = NULL;
	last_mapping = NULL;
	eb_mappings_load();
}

/*
 * At a session's start, before decoding: asks the brokers about every
 * Kafka topic that topics are relayed to, the progress topic under
 * exactly-once, and the topics the last session's decoding stopped at
 * (waiting at most warm_up_ms for an answer).
 */
void
eb_kafka_topics_prepare(long warm_up_ms)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_eventbus topics",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	List	   *names = eb_topics_relayed();
	const char *progress = eb_kafka_progress_topic();
	ListCell   *lc;

	if (progress != NULL && !eb_topics_list_has(names, progress))
		names = lappend(names, pstrdup(progress));
	foreach(lc, wanted_topics)
		if (!eb_topics_list_has(names, lfirst(lc)))
			names = lappend(names, pstrdup(lfirst(lc)));
	(void) eb_topics_ask(names, warm_up_ms);
	refreshed_at = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * Have the brokers described every Kafka topic the last session's decoding
 * stopped at?  If not, asks about those once more (waiting at most
 * EB_TOPIC_WAIT_ASK_MS) and says false; the caller waits a while and asks
 * again.
 */
bool
eb_kafka_topics_ready(bool ask)
{
	List	   *missing = NIL;
	ListCell   *lc;

	foreach(lc, wanted_topics)
		if (!eb_topic_described(eb_topic_entry(lfirst(lc), false)))
			missing = lappend(missing, lfirst(lc));
	if (missing == NIL)
	{
		list_free_deep(wanted_topics);
		wanted_topics = NIL;
		return true;
	}
	if (ask)
		(void) eb_topics_ask(missing, EB_TOPIC_WAIT_ASK_MS);
	list_free(missing);
	return false;
}

/*
 * Messages the producer holds for a Kafka topic the brokers came to refuse
 * after its mapping was decided (authorization revoked, topic deleted)
 * wait there for good: librdkafka neither sends nor fails them.  Every
 * EB_TOPIC_STUCK_CHECK_MS, the Kafka topics with messages in flight and no
 * delivery report since the last check are asked about; if the brokers
 * refuse one, the session ends (nothing past its messages is confirmed),
 * and the next one refuses them before sending, by the topic's on_error
 * policy (eb_relay_partition).
 */
static void
eb_topics_check_stuck(TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	EbKafkaTopic *e;
	List	   *ask = NIL;
	ListCell   *lc;

	stuck_checked_at = now;
	if (kafka_topics == NULL)
		return;
	hash_seq_init(&seq, kafka_topics);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->in_flight > 0 && e->answers == e->answers_seen)
			ask = lappend(ask, pstrdup(e->name));
		e->answers_seen = e->answers;
	}
	if (ask == NIL || !eb_topics_ask(ask, EB_TOPIC_ASK_MS))
	{
		list_free_deep(ask);
		return;
	}
	foreach(lc, ask)
	{
		e = eb_topic_entry(lfirst(lc), false);
		if (eb_topic_refused(e) && !eb_session_failed)
		{
			eb_relay_error(psprintf("%lld message(s) for Kafka topic \"%s\" wait in the producer, and the brokers refuse the topic (%s): relaying again from the last confirmed position, where its messages are refused before they are sent",
									(long long) e->in_flight, e->name,
									rd_kafka_err2str(e->err)));
			eb_session_failed = true;
		}
	}
	list_free_deep(ask);
}

/*
 * Kafka topics the session first heard of from a change of eventbus.topic
 * (a relay_topic() call), just asked about: brokers that create topics on
 * demand answer the first question with "no leader yet".  Decoding would
 * stop at the first event for such a topic and the session end there, so
 * those answered so (an error that may pass) are asked again every
 * EB_TOPIC_NEW_ASK_EVERY_MS, for up to EB_TOPIC_NEW_WAIT_MS, while
 * delivery reports are served.  Gives up at once when the brokers do not
 * answer at all, or at shutdown.
 */
static void
eb_topics_wait_fresh(List *fresh)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   EB_TOPIC_NEW_WAIT_MS);

	for (;;)
	{
		List	   *waiting = NIL;
		ListCell   *lc;
		bool		answered;

		foreach(lc, fresh)
		{
			EbKafkaTopic *e = eb_topic_entry(lfirst(lc), false);

			/* no count yet, and no refusal */
			if (e != NULL && e->partitions == 0 && !eb_kafka_error_is_permanent(e->err))
				waiting = lappend(waiting, lfirst(lc));
		}
		if (waiting == NIL || eb_shutdown_requested ||
			GetCurrentTimestamp() >= deadline)
		{
			list_free(waiting);
			return;
		}
		rd_kafka_poll(eb_producer, EB_TOPIC_NEW_ASK_EVERY_MS);
		CHECK_FOR_INTERRUPTS();
		answered = eb_topics_ask(waiting, EB_TOPIC_ASK_MS);
		list_free(waiting);
		if (!answered)
			return;
	}
}

/*
 * Between WAL records, outside decoding: after eventbus.topic changed,
 * asks about the relayed Kafka topics the session has no answer for; every
 * EB_TOPIC_RETRY_MS about those that could not be used; every
 * EB_TOPIC_REFRESH_MS about all of them.  Cheap when there is nothing to
 * ask.  Waits at most EB_TOPIC_ASK_MS for an answer; while the brokers do
 * not answer, asks at most once a second.  changed_only: only if
 * eventbus.topic changed (after each WAL record).
 */
void
eb_kafka_topics_refresh(bool changed_only)
{
	TimestampTz now;
	MemoryContext cxt;
	MemoryContext old;
	List	   *names;
	List	   *ask = NIL;
	ListCell   *lc;
	bool		all;
	bool		refresh_due;
	List	   *fresh = NIL;
	bool		answered = true;
	bool		undescribed = false;

	if (changed_only && !relayed_changed)
		return;
	now = GetCurrentTimestamp();
	if (!changed_only && TimestampDifferenceExceeds(stuck_checked_at, now, EB_TOPIC_STUCK_CHECK_MS))
		eb_topics_check_stuck(now);
	/*
	 * after a change (relay_topic(), a topic grown), every count is asked
	 * again but those given just now
	 */
	refresh_due = TimestampDifferenceExceeds(refreshed_at, now, EB_TOPIC_REFRESH_MS);
	all = relayed_changed || refresh_due;
	if (!relayed_changed && (now < next_ask_at || (!all && !retry_pending)))
		return;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_eventbus topics",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	names = eb_topics_relayed();
	if (kafka_topics != NULL)
	{
		HASH_SEQ_STATUS seq;
		EbKafkaTopic *e;

		/* and those only outbox messages went to, if refused */
		hash_seq_init(&seq, kafka_topics);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (eb_topic_refusal_recorded(e) && !eb_topics_list_has(names, e->name))
				names = lappend(names, pstrdup(e->name));
	}
	foreach(lc, names)
	{
		EbKafkaTopic *e = eb_topic_entry(lfirst(lc), false);

		if (e == NULL)
			fresh = lappend(fresh, lfirst(lc));
		/* refusals every EB_TOPIC_RETRY_MS, topics without an answer every second */
		if (e == NULL ||
			(all && (refresh_due || !eb_topic_answer_fresh(e, now))) ||
			(e->partitions == 0 &&
			 TimestampDifferenceExceeds(e->asked_at, now,
										eb_topic_refusal_recorded(e) ? EB_TOPIC_RETRY_MS :
										EB_BROKER_PROBE_MS)))
			ask = lappend(ask, lfirst(lc));
	}
	if (ask != NIL)
		answered = eb_topics_ask(ask, EB_TOPIC_ASK_MS);
	if (answered && fresh != NIL)
		eb_topics_wait_fresh(fresh);
	if (answered && all)
		refreshed_at = now;
	foreach(lc, names)
	{
		EbKafkaTopic *e = eb_topic_entry(lfirst(lc), false);

		if (e == NULL || e->partitions == 0)
			undescribed = true;
	}
	retry_pending = undescribed || !answered;
	next_ask_at = TimestampTzPlusMilliseconds(now, undescribed ? EB_BROKER_PROBE_MS :
											  EB_TOPIC_RETRY_MS);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * A message was refused with an error that concerns its whole Kafka topic
 * (unknown topic or partition, not authorized): asks the brokers about the
 * topic, outside decoding, at most once a second per topic.  True with
 * *err set when they refuse the topic for good: the reason to give, and
 * from now on this session sends nothing more to it (eb_relay_partition).
 */
bool
eb_kafka_topic_refusal(const char *kafka_topic, rd_kafka_resp_err_t *err)
{
	EbKafkaTopic *e = eb_topic_entry(kafka_topic, false);

	/* at most once a second, answered or not: many refusals, one question */
	if (e == NULL || TimestampDifferenceExceeds(e->asked_at, GetCurrentTimestamp(),
												EB_BROKER_PROBE_MS))
	{
		List	   *names = list_make1(pstrdup(kafka_topic));

		(void) eb_topics_ask(names, EB_TOPIC_ASK_MS);
		list_free_deep(names);
		e = eb_topic_entry(kafka_topic, false);
		retry_pending = true;	/* asked again on schedule, should it pass */
	}
	if (!eb_topic_refused(e))
		return false;
	*err = e->err;
	return true;
}

/*
 * Counts a message handed to the producer for this Kafka topic; the entry
 * goes with the message, for its delivery report.
 */
EbKafkaTopic *
eb_kafka_topic_sending(const char *kafka_topic)
{
	EbKafkaTopic *e = last_entry;

	if (e == NULL || strcmp(e->name, kafka_topic) != 0)
		e = last_entry = eb_topic_entry(kafka_topic, true);
	e->in_flight++;
	return e;
}

/*
 * A delivery report for a message counted by eb_kafka_topic_sending: runs
 * in a librdkafka callback, so touches nothing but the entry (which lives
 * as long as the session's producer).
 */
void
eb_kafka_topic_answered(EbKafkaTopic *e)
{
	if (e == NULL)
		return;
	e->in_flight--;
	e->answers++;
}


/* ---------- partition mappings ---------- */

static void
eb_mappings_init(void)
{
	HASHCTL		ctl;

	if (mappings != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(EbMappingKey);
	ctl.entrysize = sizeof(EbMapping);
	ctl.hcxt = TopMemoryContext;
	mappings = hash_create("pg_eventbus relay partition mappings", 32, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Reads the decided mappings (eventbus.relay_partitioning) into memory.
 * Called outside decoding, in a transaction of its own.
 */
void
eb_mappings_load(void)
{
	EbSpi		spi;
	uint64		i;

	eb_mappings_init();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	eb_spi_exec("SELECT topic_id, kafka_topic, local_partitions, kafka_partitions, by_partition FROM eventbus.relay_partitioning",
				0, NULL, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		EbMappingKey key;
		EbMapping  *m;
		char	   *kafka_topic = SPI_getvalue(tup, desc, 2);

		memset(&key, 0, sizeof(key));
		key.topic_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		strlcpy(key.kafka_topic, kafka_topic, sizeof(key.kafka_topic));
		m = hash_search(mappings, &key, HASH_ENTER, NULL);
		m->local_partitions = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		m->kafka_partitions = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		m->by_partition = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		m->persisted = true;
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	mappings_unpersisted = 0;
}

/*
 * Writes the mappings decided since the last call to
 * eventbus.relay_partitioning, durably, before the slot is confirmed past
 * any message sent with them.  Outside decoding, in a transaction of its
 * own.
 */
void
eb_mappings_persist(void)
{
	HASH_SEQ_STATUS seq;
	EbMapping  *m;
	EbSpi		spi;

	if (mappings_unpersisted == 0)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	hash_seq_init(&seq, mappings);
	while ((m = hash_seq_search(&seq)) != NULL)
	{
		Oid			argtypes[5] = {INT4OID, TEXTOID, INT4OID, INT4OID, BOOLOID};
		Datum		values[5];

		if (m->persisted)
			continue;
		values[0] = Int32GetDatum(m->key.topic_id);
		values[1] = CStringGetTextDatum(m->key.kafka_topic);
		values[2] = Int32GetDatum(m->local_partitions);
		values[3] = Int32GetDatum(m->kafka_partitions);
		values[4] = BoolGetDatum(m->by_partition);
		eb_spi_exec("DELETE FROM eventbus.relay_partitioning WHERE topic_id = $1 AND kafka_topic = $2",
					2, argtypes, values, NULL, false);
		eb_spi_exec("INSERT INTO eventbus.relay_partitioning (topic_id, kafka_topic, local_partitions, kafka_partitions, by_partition) VALUES ($1, $2, $3, $4, $5)",
					5, argtypes, values, NULL, false);
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* durable before the slot moves on, whatever synchronous_commit says */
	XLogFlush(XactLastCommitEnd);

	hash_seq_init(&seq, mappings);
	while ((m = hash_seq_search(&seq)) != NULL)
		m->persisted = true;
	mappings_unpersisted = 0;
}

/*
 * Decoding could not decide a mapping: the brokers have not described the
 * Kafka topic.  The next session's start waits for them (outside
 * decoding).
 */
static void
eb_kafka_topic_wanted(const char *kafka_topic)
{
	MemoryContext old;

	if (eb_topics_list_has(wanted_topics, kafka_topic))
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	wanted_topics = lappend(wanted_topics, pstrdup(kafka_topic));
	MemoryContextSwitchTo(old);
}

/*
 * The Kafka partition for an event: from the topic's mapping, decided the
 * first time the relay sends an event of the topic to this Kafka topic (or
 * after the local topic grew), from the partition count the brokers gave
 * the session (never asked for here: this runs inside decoding).  When the
 * session has no count for the Kafka topic (the brokers did not answer, or
 * answered with an error that may pass), this decides nothing and returns
 * false: the topic is wanted (eb_kafka_topics_prepare), and the caller
 * sends nothing of the transaction.  RD_KAFKA_PARTITION_UA in *partition
 * when the key decides or the Kafka topic is refused for good (*refused
 * says why).
 */
bool
eb_relay_partition(EbRelayMessage *msg, int32 *partition, rd_kafka_resp_err_t *refused)
{
	EbMappingKey key;
	EbMapping  *m;
	EbKafkaTopic *e = last_entry;

	*partition = RD_KAFKA_PARTITION_UA;
	*refused = RD_KAFKA_RESP_ERR_NO_ERROR;

	/*
	 * A Kafka topic the brokers refuse (as asked at this session's start,
	 * on schedule, or after a refusal): nothing is sent to it, whatever
	 * the mapping.  Sending would be refused, or wait for good in the
	 * producer; inside a Kafka transaction it fails the whole transaction.
	 */
	if (e == NULL || strcmp(e->name, msg->kafka_topic) != 0)
	{
		e = eb_topic_entry(msg->kafka_topic, false);
		if (e != NULL)
			last_entry = e;
	}
	if (eb_topic_refused(e))
	{
		*refused = e->err;
		return true;
	}
	if (msg->partition < 0 || msg->topic_id < 0)
		return true;
	/* consecutive events are mostly of one topic: skip hashing the key */
	m = last_mapping;
	if (m == NULL || m->key.topic_id != msg->topic_id ||
		strcmp(m->key.kafka_topic, msg->kafka_topic) != 0)
	{
		eb_mappings_init();
		memset(&key, 0, sizeof(key));
		key.topic_id = msg->topic_id;
		strlcpy(key.kafka_topic, msg->kafka_topic, sizeof(key.kafka_topic));
		m = hash_search(mappings, &key, HASH_FIND, NULL);
	}
	if (m == NULL || m->local_partitions != msg->local_partitions)
	{
		if (!eb_topic_described(e))
		{
			eb_kafka_topic_wanted(msg->kafka_topic);
			return false;
		}
		memset(&key, 0, sizeof(key));
		key.topic_id = msg->topic_id;
		strlcpy(key.kafka_topic, msg->kafka_topic, sizeof(key.kafka_topic));
		m = hash_search(mappings, &key, HASH_ENTER, NULL);
		m->local_partitions = msg->local_partitions;
		m->kafka_partitions = e->partitions;
		m->by_partition = e->partitions == msg->local_partitions;
		m->persisted = false;
		mappings_unpersisted++;
		if (!m->by_partition)
			ereport(LOG,
					(errmsg("pg_eventbus relay: topic \"%s\" has %d partitions, Kafka topic \"%s\" has %d: events go to Kafka partitions by key",
							msg->topic ? msg->topic : "?", msg->local_partitions,
							msg->kafka_topic, e->partitions)));
	}
	last_mapping = m;
	if (m->by_partition)
		*partition = msg->partition;
	return true;
}
