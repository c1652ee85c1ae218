module deferscope.dev/gen-layouts

go 1.19
