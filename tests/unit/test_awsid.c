/* The AWS identifiers' form: regions and instance ids that must pass and
 * near misses that must not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "awsid.h"

static void test_aws_identifiers(void **state) {
        static const char *const regions_ok[] = {
                "us-east-1", "eu-central-1", "us-gov-west-1", "cn-north-1", "ap-southeast-3", "il-central-1",
                "us-isob-east-1", "ca-west-1", "eu-south-12",
        };
        static const char *const regions_bad[] = {
                "us-east1", "us-east-", "useast-1", "US-EAST-1", "us-east-1a", "us--east-1", "u-east-1",
                "us-1", "us-east-1-", "", "us east 1", "us-east-x", "usa-east-1", "us-east-1\n",
        };
        static const char *const ids_ok[] = { "i-0123456789abcdef0", "i-1234abcd", "i-00000000" };
        static const char *const ids_bad[] = {
                "0123456789", "i-0123456789", "i-0123456789ABCDEF0", "i-1234abc", "i-0123456789abcdef01",
                "I-1234abcd", "i-1234abcg", "i-", "", "i-1234abcd ",
        };

        for (size_t i = 0; i < ELEMENTSOF(regions_ok); i++)
                if (!aws_region_is_valid(regions_ok[i]))
                        fail_msg("refused region %s", regions_ok[i]);
        for (size_t i = 0; i < ELEMENTSOF(regions_bad); i++)
                if (aws_region_is_valid(regions_bad[i]))
                        fail_msg("accepted region \"%s\"", regions_bad[i]);
        assert_false(aws_region_is_valid(NULL));

        for (size_t i = 0; i < ELEMENTSOF(ids_ok); i++)
                if (!aws_instance_id_is_valid(ids_ok[i]))
                        fail_msg("refused instance id %s", ids_ok[i]);
        for (size_t i = 0; i < ELEMENTSOF(ids_bad); i++)
                if (aws_instance_id_is_valid(ids_bad[i]))
                        fail_msg("accepted instance id \"%s\"", ids_bad[i]);
        assert_false(aws_instance_id_is_valid(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_aws_identifiers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
