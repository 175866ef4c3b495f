#ifndef GREET_H
#define GREET_H
/* The greeting for `name`, in a static buffer. */
const char *greet(const char *name);
#endif
