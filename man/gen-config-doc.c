/* gen-config-doc.c - build-time helper: copy a man page template to stdout,
 * replacing the line "@CONFIG_OPTIONS@" with the option reference that
 * config_write_doc() generates from the option table in
 * src/common/config.c, so raftkv.conf(5) can never drift from the code.
 *
 *   gen-config-doc TEMPLATE > PAGE.scd
 */
#include "common/config.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen-config-doc TEMPLATE\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof(line), in)) {
        if (strcmp(line, "@CONFIG_OPTIONS@\n") == 0) {
            config_write_doc(stdout, CONFIG_DOC_SCDOC);
            found = 1;
        } else {
            fputs(line, stdout);
        }
    }
    int bad = ferror(in);
    fclose(in);
    if (bad || !found) {
        fprintf(stderr, "gen-config-doc: %s: %s\n", argv[1],
                bad ? "read error" : "no @CONFIG_OPTIONS@ line");
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
