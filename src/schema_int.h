/*-------------------------------------------------------------------------
 *
 * schema_int.h
 *	  A compiled JSON Schema: the tree of nodes that schema_compile.c builds
 *	  and schema_validate.c walks.  Private to the schema modules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SCHEMA_INT_H
#define EB_SCHEMA_INT_H

#include "lib/stringinfo.h"
#include "regex/regex.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "schema.h"

/* JSON types, as a bit mask */
#define EB_T_NULL		0x01
#define EB_T_BOOLEAN	0x02
#define EB_T_OBJECT		0x04
#define EB_T_ARRAY		0x08
#define EB_T_NUMBER		0x10
#define EB_T_STRING		0x20
#define EB_T_INTEGER	0x40

/* Path segments kept for error messages; deeper ones are shown as "..." */
#define EB_MAX_PATH		64

typedef enum EbFormat
{
	EB_FMT_NONE = 0,
	EB_FMT_DATE_TIME,
	EB_FMT_DATE,
	EB_FMT_UUID,
	EB_FMT_EMAIL
} EbFormat;

typedef struct EbSNode EbSNode;

typedef struct EbSKey
{
	const char *name;			/* not NUL-terminated; points into the doc */
	int			len;
	EbSNode    *node;			/* properties only */
} EbSKey;

struct EbSNode
{
	int			boolean;		/* -1 an object schema, 0 false, 1 true */
	uint8		types;			/* 0: any type */
	const char *types_text;		/* "integer" or "null" ..., for errors */
	int			nprops;
	EbSKey	   *props;			/* sorted by eb_key_cmp */
	int			nrequired;
	EbSKey	   *required;
	EbSNode    *additional;
	int			nprefix;
	EbSNode   **prefix;
	EbSNode    *items;
	bool		has_enum;
	int			nenum;
	JsonbValue *enumvals;
	bool		has_const;
	JsonbValue	constval;
	Numeric		minimum;
	Numeric		maximum;
	Numeric		exmin;
	Numeric		exmax;
	Numeric		multiple;
	int32		min_length;		/* -1: none */
	int32		max_length;
	int32		min_items;
	int32		max_items;
	bool		unique;
	regex_t    *pattern;
	char	   *pattern_src;
	EbFormat	format;
	char	   *ref_src;
	EbSNode    *ref;
	int			nall;
	EbSNode   **all;
	int			nany;
	EbSNode   **any;
	int			none;
	EbSNode   **one;
	EbSNode    *not;
	char	   *where;			/* JSON pointer of this schema */
	int			mark;			/* cycle check: 0 new, 1 on stack, 2 done */
};

struct EbSchema
{
	Jsonb	   *doc;			/* private copy; nodes point into it */
	EbSNode    *root;
	List	   *regexes;		/* regex_t *, freed with the context */
	Numeric		zero;
};


extern const char *const eb_format_names[];
extern int	eb_key_cmp(const void *a, const void *b);

/* Validates a value; on failure, *msg is "<JSON path>: <rule broken>". */
extern bool eb_schema_check(EbSchema *schema, JsonbValue *root, StringInfo msg);

#endif							/* EB_SCHEMA_INT_H */
