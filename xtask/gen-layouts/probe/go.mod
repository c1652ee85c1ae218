module deferscope.dev/layout-probe

go 1.19
