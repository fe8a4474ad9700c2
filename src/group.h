/*-------------------------------------------------------------------------
 *
 * group.h
 *	  Consumer groups shared by group.c (definition) and consume.c (use).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_GROUP_H
#define EB_GROUP_H

#include "catalog.h"

typedef struct EbGroup
{
	int32		group_id;
	Oid			owner;
	int32		max_attempts;
	char	   *dead_letter_topic;	/* NULL: none (a group on a dead-letter topic) */
	bool		paused;
} EbGroup;

/* Where one partition of a group stands for the polling member. */
typedef struct EbPartState
{
	int64		committed;
	int64		fetched;
	bool		held_by_other;	/* an active lease of another member */
	bool		mine;			/* an active lease of this member, fetched in
								 * this session: count from fetched */
	bool		leased_to_me;	/* an active lease of this member, any session */
} EbPartState;

/*
 * These run between eb_spi_begin(..., true) and eb_spi_end, where the
 * current user is the extension owner: pass the caller (EbSpi.save_userid).
 */
extern char *eb_session_id(void);
extern bool eb_groups_catalog_v2(void);
extern void eb_group_lookup(const char *group_name, EbTopic *topic, EbGroup *g);
extern bool eb_group_lookup_locked(const char *group_name, EbTopic *topic, EbGroup *g,
								   bool exclusive);
extern bool eb_group_lock(int32 group_id, bool exclusive);
extern void eb_group_unlock(int32 group_id, bool exclusive);
extern void eb_group_ensure_partitions(EbGroup *g, EbTopic *topic);
extern EbPartState *eb_group_partition_states(EbGroup *g, EbTopic *topic,
											  const char *member, bool add_missing);
extern void eb_check_group_member(EbGroup *g, const char *group_name, Oid caller);

/* consume.c: hooks and callbacks, from _PG_init */
extern void eb_consume_init(void);

#endif							/* EB_GROUP_H */
