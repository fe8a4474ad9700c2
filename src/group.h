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
	char	   *dead_letter_topic;
} EbGroup;

/*
 * These run between eb_spi_begin(..., true) and eb_spi_end, where the
 * current user is the extension owner: pass the caller (EbSpi.save_userid).
 */
extern char *eb_session_id(void);
extern void eb_group_lookup(const char *group_name, EbTopic *topic, EbGroup *g);
extern void eb_group_ensure_partitions(EbGroup *g, EbTopic *topic);
extern void eb_check_group_member(EbGroup *g, const char *group_name, Oid caller);

#endif							/* EB_GROUP_H */
