/* main.c — the mlxn command-line program (placeholder until the CLI lands). */
#include "mlxn.h"
#include <stdio.h>
int main(void) {
    printf("mlxn\n");
    return 0;
}
