/* AWS identifiers checked offline, by their form: the config refuses a
 * bad [aws] region or instance_id at load, and the AWS client says why
 * EC2 refused one it learned from IMDS. Pure: no I/O. */
#pragma once

#include "macro.h"

/* A region is letters-letters-digit ("us-east-1", "us-gov-west-1",
 * "cn-north-1"), an instance id "i-" and 8 or 17 lowercase hex digits. */
bool aws_region_is_valid(const char *s);
bool aws_instance_id_is_valid(const char *s);
#define AWS_INSTANCE_ID_FORM "i- followed by 8 or 17 lowercase hex digits, e.g. i-0123456789abcdef0"

/* A target group ARN:
 * arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID,
 * PARTITION aws, aws-cn, aws-us-gov, ... (lowercase letters and dashes),
 * ACCOUNT 12 digits, NAME 1-32 letters, digits and inner dashes, ID 16
 * lowercase hex digits. On success the region goes into ret_region (of
 * `size` bytes, may be NULL). */
bool aws_target_group_arn_parse(const char *s, char *ret_region, size_t size);
#define AWS_TARGET_GROUP_ARN_FORM                                                                                     \
        "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID, e.g. "                                     \
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
