/* AWS credentials, found the way the AWS SDKs find them, in order:
 *   1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN;
 *   2. systemd credentials: $CREDENTIALS_DIRECTORY/aws-credentials, a
 *      shared-credentials INI file (LoadCredential=aws-credentials:...);
 *   3. the shared credentials file: [aws] credentials_file, else
 *      $AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials, with the
 *      profile [aws] profile, else $AWS_PROFILE, else "default";
 *   4. the instance role through IMDSv2 (aws.c does the fetching; the
 *      parsing of its JSON is here), refreshed before it expires.
 * Parsing is pure; the secret strings are wiped when freed and are never
 * put in messages. */
#pragma once

#include "macro.h"

typedef enum AwsCredSource {
        AWS_CRED_NONE,
        AWS_CRED_ENVIRONMENT,
        AWS_CRED_SYSTEMD,
        AWS_CRED_FILE,
        AWS_CRED_INSTANCE_ROLE,
        _AWS_CRED_SOURCE_MAX,
        _AWS_CRED_SOURCE_INVALID = -EINVAL,
} AwsCredSource;

const char *aws_cred_source_to_string(AwsCredSource s);

typedef struct AwsCredentials {
        char *access_key;
        char *secret_key;
        char *session_token;   /* NULL for long-term keys */
        usec_t expiration;     /* wall clock; 0 = does not expire */
        AwsCredSource source;
        char *origin;          /* "profile prod in /etc/monkeyd/aws-credentials", "role web-role": no secret */
} AwsCredentials;

void aws_credentials_done(AwsCredentials *c); /* wipes and frees, leaves a zeroed struct */
int aws_credentials_copy(const AwsCredentials *from, AwsCredentials *to);

/* Pure: the three variables as getenv() would give them (NULL when unset).
 * -ENOENT when neither key is set; -EINVAL when only one is. */
int aws_credentials_from_vars(const char *access_key, const char *secret_key, const char *session_token,
                              AwsCredentials *ret, char **ret_error);

/* Pure: a shared credentials file's text (INI: [profile] with
 * aws_access_key_id, aws_secret_access_key, aws_session_token). `origin`
 * names the file in messages. -ENOENT when the profile is absent,
 * -EBADMSG for a malformed file or a profile without both keys. */
int aws_credentials_parse_file(const char *text, const char *profile, const char *origin, AwsCredentials *ret,
                               char **ret_error);

/* Pure: IMDS iam/security-credentials/ROLE JSON ({"Code":"Success",
 * "AccessKeyId","SecretAccessKey","Token","Expiration":"...Z"}). */
int aws_credentials_parse_role(const char *json, size_t len, const char *role, AwsCredentials *ret,
                               char **ret_error);

/* Pure: "2026-11-22T20:00:00Z" (also with fractional seconds) as wall usec. */
int aws_parse_iso8601(const char *s, usec_t *ret);

/* Steps 1-3 of the chain (no network): the first source that has
 * credentials. -ENOENT when none has (then the instance role is next);
 * other errors stop the chain with *ret_error (a file that exists but is
 * unreadable, too open or malformed must not be skipped silently). */
int aws_credentials_find_local(const char *credentials_file, const char *profile, AwsCredentials *ret,
                               char **ret_error);
