/* shell.c - raftkvctl without a command: a prompt with line editing and
 * history on a terminal, or one command per line from a pipe.  Both run
 * the same commands as the command line, on one kept connection. */
#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#define MAX_ARGS 64

/* Splits a line like a shell does, in place of a copy: words separated by
 * blanks, '...' taken literally, "..." with \" \\ \n \t \xNN escapes (so a
 * binary value can be typed).  Returns argc, or -1 with *why set. */
static int split(char *line, char **argv, char **why)
{
    int argc = 0;
    char *in = line, *out = line;
    for (;;) {
        while (*in == ' ' || *in == '\t' || *in == '\n' || *in == '\r')
            in++;
        if (!*in || *in == '#')
            return argc;
        if (argc == MAX_ARGS) {
            *why = "too many words";
            return -1;
        }
        argv[argc++] = out;
        while (*in && *in != ' ' && *in != '\t' && *in != '\n' && *in != '\r') {
            char q = *in;
            if (q != '\'' && q != '"') {
                *out++ = *in++;
                continue;
            }
            in++;
            while (*in && *in != q) {
                if (q == '"' && *in == '\\' && in[1]) {
                    in++;
                    char e = *in++;
                    if (e == 'n')
                        *out++ = '\n';
                    else if (e == 't')
                        *out++ = '\t';
                    else if (e == 'x' && in[0] && in[1]) {
                        char hex[3] = {in[0], in[1], 0}, *end;
                        unsigned long byte = strtoul(hex, &end, 16);
                        if (*end || byte == 0) {
                            *why = "\\x needs two hex digits, not 00 (a NUL byte needs 'set KEY -' from a file)";
                            return -1;
                        }
                        *out++ = (char)byte;
                        in += 2;
                    } else
                        *out++ = e;
                } else {
                    *out++ = *in++;
                }
            }
            if (*in != q) {
                *why = "unterminated quote";
                return -1;
            }
            in++;
        }
        if (*in)
            in++;
        *out++ = '\0';
    }
}

static void shell_help(const char *topic)
{
    if (topic && *topic) {
        const struct ctl_command *c = ctl_find_command(topic);
        if (!c) {
            fprintf(stderr, "raftkvctl: no command '%s'; type 'help'\n", topic);
            return;
        }
        printf("%s %s\n  %s\n%s", c->name, c->args, c->summary, c->help);
        return;
    }
    puts("Commands (options as on the command line, e.g. 'get -o json KEY'):");
    for (const struct ctl_command *c = ctl_commands; c->name; c++)
        printf("  %s %s\n", c->name, c->args);
    puts("  help [COMMAND]\n  exit | quit\n"
         "Quote words with '...' or \"...\" (\"\\x01\\n\" for bytes, but no NUL). Values from stdin ('-') only work\n"
         "on the command line.");
}

/* One line: returns the command's exit code; *quit set by exit/quit. */
static int run_line(struct ctl *ctl, char *line, bool *quit)
{
    char *argv[MAX_ARGS + 1], *why = NULL;
    int argc = split(line, argv, &why);
    if (argc < 0)
        return ctl_fail(EXIT_USAGE, "%s", why);
    if (argc == 0)
        return EXIT_OK;
    argv[argc] = NULL;
    if (strcmp(argv[0], "exit") == 0 || strcmp(argv[0], "quit") == 0) {
        *quit = true;
        return EXIT_OK;
    }
    if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "?") == 0) {
        shell_help(argc > 1 ? argv[1] : NULL);
        return EXIT_OK;
    }
    return ctl_run_command(ctl, argc, argv);
}

#ifdef HAVE_READLINE
static char *complete_command(const char *text, int state)
{
    static const struct ctl_command *next;
    static size_t len;
    if (!state) {
        next = ctl_commands;
        len = strlen(text);
    }
    while (next->name) {
        const struct ctl_command *c = next++;
        if (strncmp(c->name, text, len) == 0)
            return strdup(c->name);
    }
    return NULL;
}

static char **completion(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    return start == 0 ? rl_completion_matches(text, complete_command) : NULL;
}

static int interactive(struct ctl *ctl)
{
    char *line;
    bool quit = false;
    int code = EXIT_OK;
    rl_attempted_completion_function = completion;
    printf("raftkvctl shell: 'help' lists the commands, Ctrl-D leaves\n");
    while (!quit && (line = readline("raftkv> "))) {
        if (*line)
            add_history(line);
        code = run_line(ctl, line, &quit);
        free(line);
    }
    if (!quit)
        putchar('\n');
    return code;
}
#else
/* Without readline: plain lines, and "!!" repeats the last one. */
static int interactive(struct ctl *ctl)
{
    char *line = NULL, *last = NULL;
    size_t cap = 0;
    bool quit = false;
    int code = EXIT_OK;
    printf("raftkvctl shell: 'help' lists the commands, Ctrl-D leaves\n");
    while (!quit) {
        fputs("raftkv> ", stdout);
        fflush(stdout);
        if (getline(&line, &cap, stdin) < 0)
            break;
        if (strncmp(line, "!!", 2) == 0 && last) {
            free(line);
            line = strdup(last);
            cap = line ? strlen(line) + 1 : 0;
            if (!line)
                break;
        }
        free(last);
        last = strdup(line);
        code = run_line(ctl, line, &quit);
    }
    free(line);
    free(last);
    return code;
}
#endif

int ctl_shell(struct ctl *ctl)
{
    ctl->in_shell = true;
    if (isatty(STDIN_FILENO))
        return interactive(ctl);
    /* From a pipe: no prompt, every line runs, the status is the last one's. */
    char *line = NULL;
    size_t cap = 0;
    bool quit = false;
    int code = EXIT_OK;
    while (!quit && getline(&line, &cap, stdin) >= 0)
        code = run_line(ctl, line, &quit);
    free(line);
    return code;
}
