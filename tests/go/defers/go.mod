module deferscope.test/defers

go 1.19
